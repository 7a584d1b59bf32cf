// The npm tarball is what users get: it installs into an empty directory, its CLI answers
// --help, --version and render there, and its types compile for library users.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/topology.js';

describe('npm package', () => {
  let dir = '';
  let version = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-pack-'));
    version = (JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    const packed = await execa('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: repoRoot });
    const tarball = join(dir, String(packed.stdout).trim().split('\n').pop()!);
    const app = join(dir, 'app');
    await execa('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
    await execa('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: app });
  }, 240_000);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const npx = (args: string[]) => execa('npx', ['--no-install', 'natctl', ...args], { cwd: join(dir, 'app'), reject: false });

  it('npx natctl --help and --version work from the installed tarball', async () => {
    const help = await npx(['--help']);
    expect(help.exitCode).toBe(0);
    expect(String(help.stdout)).toContain('apply');
    expect(String(help.stdout)).toContain('doctor');
    const v = await npx(['--version']);
    expect(String(v.stdout).trim()).toBe(version);
  });

  it('npx natctl render works without root or kernel access', async () => {
    const config = join(dir, 'app', 'natctl.yaml');
    await writeFile(config, 'version: 1\nmappings:\n  - publish: "8080:80"\n    target: 198.18.0.2\n');
    const rendered = await npx(['render', '-f', config, '--format', 'nft']);
    expect(rendered.exitCode).toBe(0);
    expect(String(rendered.stdout)).toContain('tcp . 8080 comment "tcp-8080" : 198.18.0.2 . 80');
  });

  it('ships the JSON Schema and docs, and its types compile for a library user', async () => {
    const installed = join(dir, 'app', 'node_modules', 'natctl');
    expect(JSON.parse(await readFile(join(installed, 'schema', 'config-v1.json'), 'utf8')).title).toBe('natctl config v1');
    await readFile(join(installed, 'docs', 'embedding.md'), 'utf8');
    const user = join(dir, 'app', 'user.ts');
    await writeFile(user, [
      "import { Controller, parseConfigObject, renderNft, ConfigError, type Config, type StatusReport } from 'natctl';",
      "const config: Config = parseConfigObject({ version: 1 });",
      "const document = renderNft(config);",
      "const count: number = document.nftables.length;",
      "export async function run(): Promise<StatusReport> { const c = await Controller.open({ stateDir: '/tmp/x' }); return c.status(); }",
      "export const isConfigError = (e: unknown): boolean => e instanceof ConfigError && e.exitCode === 2 && count > 0;",
    ].join('\n'));
    const tsc = await execa(join(repoRoot, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', user], { cwd: join(dir, 'app'), reject: false });
    expect(String(tsc.stdout) + String(tsc.stderr)).toBe('');
    expect(tsc.exitCode).toBe(0);
  });
});
