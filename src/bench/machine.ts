// The machine description stored with every result: numbers mean little without it.
import { readFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { execa } from 'execa';
import type { AddonStatus } from './options.js';
import type { Machine } from './results.js';

async function firstLine(file: string, args: string[]): Promise<string> {
  const result = await execa(file, args, { reject: false });
  return result.exitCode === 0 ? String(result.stdout || result.stderr).split('\n')[0]!.trim() : `${file}: unavailable`;
}

export async function describeMachine(root: string, addon: AddonStatus): Promise<Machine> {
  const info = cpus();
  const pkg = JSON.parse(await readFile(`${root}/package.json`, 'utf8')) as { version: string };
  const commit = await execa('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { reject: false });
  const dirty = await execa('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no'], { reject: false });
  return {
    cpuModel: info[0]?.model.trim() ?? 'unknown',
    cores: info.length,
    kernel: release(),
    nft: await firstLine('nft', ['--version']),
    node: process.version,
    python: await firstLine('python3', ['--version']),
    natctl: pkg.version,
    commit: commit.exitCode === 0 ? `${String(commit.stdout).trim()}${String(dirty.stdout).trim() ? '+changes' : ''}` : 'unknown',
    date: new Date().toISOString(),
    addon,
  };
}
