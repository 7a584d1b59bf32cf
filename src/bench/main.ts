// npm run bench: how long natctl takes to apply N mappings, against a raw `nft -j -f` of the
// very same ruleset and against an iptables-legacy-restore of Docker-style rules (one DNAT
// per mapping), all in one run inside a scratch namespace. Report ratios, not absolute
// times: these machines are noisy. Needs root; touches only its own namespace.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { isRoot } from '../backends/exec.js';
import { renderNftDocument } from '../backends/nft/render.js';
import { parseConfigObject } from '../config/load.js';
import { buildModel } from '../model/build.js';
import { Controller } from '../engine/controller.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
const sizes = (process.env.NATCTL_BENCH_SIZES ?? '1,1000,10000').split(',').map(Number);
const rounds = Number(process.env.NATCTL_BENCH_ROUNDS ?? '5');

function config(count: number, variant: number): unknown {
  const mappings = Array.from({ length: count }, (_, i) => ({
    name: `m${i}`,
    hostPort: 10000 + i,
    target: `198.18.${Math.floor(i / 250)}.${(i % 250) + 2 + variant}:80`,
  }));
  return { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/16'] }], mappings };
}

function iptablesRestore(count: number): string {
  const lines = ['*nat', ':NATCTL-BENCH - [0:0]'];
  for (let i = 0; i < count; i++) lines.push(`-A NATCTL-BENCH -p tcp -m tcp --dport ${10000 + i} -j DNAT --to-destination 198.18.${Math.floor(i / 250)}.${(i % 250) + 2}:80`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

async function time(run: () => Promise<unknown>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] ?? 0;
}

async function main(): Promise<number> {
  if (!isRoot()) {
    process.stderr.write('bench: needs root (it creates a scratch network namespace)\n');
    return 3;
  }
  const netns = `nc-bench-${process.pid.toString(36)}`;
  const dir = await mkdtemp(join(tmpdir(), 'natctl-bench-'));
  await execa('ip', ['netns', 'add', netns]);
  const inNs = (command: string, args: string[]) => execa('ip', ['netns', 'exec', netns, command, ...args]);
  const natctl = (args: string[]) => execa(process.execPath, [cli, '--netns', netns, '--state-dir', join(dir, 'state'), ...args], { env: { NATCTL_NATIVE: '0' } });
  try {
    await execa('ip', ['-n', netns, 'link', 'add', 'lab0', 'type', 'bridge']);
    const rows: string[][] = [];
    for (const count of sizes) {
      const files = [0, 1].map((v) => join(dir, `config-${count}-${v}.json`));
      const rulesets = [0, 1].map((v) => join(dir, `ruleset-${count}-${v}.json`));
      for (const v of [0, 1]) {
        await writeFile(files[v]!, JSON.stringify(config(count, v)));
        await writeFile(rulesets[v]!, JSON.stringify(renderNftDocument(buildModel(parseConfigObject(config(count, v))))));
      }
      const restore = join(dir, `iptables-${count}.txt`);
      await writeFile(restore, iptablesRestore(count));
      const render = await time(async () => renderNftDocument(buildModel(parseConfigObject(config(count, 0)))));
      let flip = 0;
      const raw = await time(() => inNs('nft', ['-j', '-f', rulesets[flip++ % 2]!]));
      const apply = await time(() => natctl(['apply', '-f', files[flip++ % 2]!]));
      await natctl(['apply', '-f', files[0]!]);
      const noop = await time(() => natctl(['apply', '-f', files[0]!]));
      // What an embedding agent pays: the same apply through the library, no process start.
      const controller = await Controller.open({ netns, stateDir: join(dir, 'state') });
      const configs = [0, 1].map((v) => parseConfigObject(config(count, v)));
      const library = await time(() => controller.apply(configs[flip++ % 2]!));
      const legacy = await time(() => inNs('iptables-legacy-restore', ['--noflush', restore]));
      rows.push([String(count), render.toFixed(1), raw.toFixed(1), apply.toFixed(1), library.toFixed(1), noop.toFixed(1), legacy.toFixed(1), (apply / raw).toFixed(2), (library / raw).toFixed(2), (library / legacy).toFixed(2)]);
    }
    const header = ['mappings', 'render ms', 'raw nft -f ms', 'CLI apply ms', 'library apply ms', 'CLI no-op ms', 'iptables-legacy-restore ms', 'CLI/raw', 'library/raw', 'library/iptables'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
    process.stdout.write(`median of ${rounds} rounds, one run, netns ${netns}\n${line(header)}\n${rows.map(line).join('\n')}\n`);
    process.stdout.write('CLI apply = node start + parse + validate + render + lock + read live + load + read back + verify + host settings + record a generation.\n');
    process.stdout.write('library apply = the same through Controller.apply in a running process (what an embedding agent pays).\n');
    process.stdout.write('iptables-legacy-restore loads Docker-style rules (one DNAT rule per mapping) as a reference for the legacy path.\n');
    return 0;
  } finally {
    await execa('ip', ['netns', 'del', netns], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
});
