// The nft backend's two transports side by side (docs/performance.md, "In-process nftables
// path"): the spawned nft binary (`ip netns exec NS nft -j -f FILE`, as natctl runs it with
// --netns) against the in-process addon (libnftables on a thread that enters the namespace),
// for one small batch (add or delete one map element), a checked batch, listings of a map, and
// a library apply of a small config (changed and unchanged) over each transport.
// Runs in a scratch namespace it creates and deletes; bounded rounds; needs root.
//
//   node dist/bench/transport.js [--rounds N] [--elements N] [--mappings N] [--json]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createRunner, isRoot } from '../backends/exec.js';
import { loadNativeBinding, nativeBindingStatus } from '../backends/native.js';
import type { NftResult, NftTransport } from '../backends/nft/transport.js';
import { NativeNftTransport } from '../backends/nft/transport-native.js';
import { SpawnNftTransport } from '../backends/nft/transport-spawn.js';
import { NftBackend } from '../backends/nft/backend.js';
import { parseConfigObject } from '../config/load.js';
import { Controller } from '../engine/controller.js';

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1 || value > 100_000) throw new Error(`${name} must be an integer from 1 to 100000`);
  return value;
}

const rounds = flag('--rounds', 50);
const elements = flag('--elements', 10_000);
const mappings = flag('--mappings', 20);
const table = 'natctl_bench';

interface Row {
  operation: string;
  transport: string;
  medianMs: number;
  p90Ms: number;
  rounds: number;
}

function must(result: NftResult): NftResult {
  if (result.exitCode !== 0) throw new Error(`${result.command} failed: ${result.stderr.trim()}`);
  return result;
}

/**
 * Median and p90 of `count` timed runs after 3 warm-ups; `after` (untimed) undoes or prepares.
 * Runs are numbered on from the warm-ups, so each one gets its own element.
 */
async function sample(count: number, run: (i: number) => Promise<void>, after?: (i: number) => Promise<void>): Promise<{ medianMs: number; p90Ms: number; rounds: number }> {
  const samples: number[] = [];
  for (let i = 0; i < count + 3; i++) {
    const start = process.hrtime.bigint();
    await run(i);
    if (i >= 3) samples.push(Number(process.hrtime.bigint() - start) / 1e6);
    await after?.(i);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0;
  return { medianMs: at(0.5), p90Ms: at(0.9), rounds: count };
}

const element = (port: number, op: 'add' | 'delete'): string => JSON.stringify({ nftables: [
  { [op]: { element: { family: 'inet', table, name: 'ports', elem: [[port, { accept: null }]] } } },
] });

async function main(): Promise<number> {
  if (!isRoot()) {
    process.stderr.write('bench: needs root (it creates a scratch network namespace)\n');
    return 3;
  }
  const binding = loadNativeBinding();
  if (!binding) {
    const status = nativeBindingStatus();
    process.stderr.write(`bench: the in-process addon is not loaded (${status.loaded ? 'unknown' : status.reason}); build it with npm run build:native\n`);
    return 3;
  }
  const netns = `nc-bt-${process.pid.toString(36)}`;
  await execa('ip', ['netns', 'add', netns]);
  const dir = await mkdtemp(join(tmpdir(), 'natctl-bench-transport-'));
  try {
    const transports: [string, NftTransport][] = [
      ['spawned nft (ip netns exec)', new SpawnNftTransport({ runner: createRunner(netns) })],
      ['addon (netns thread)', new NativeNftTransport(binding, netns)],
    ];
    const setup = transports[1]![1];
    // Two maps: `ports` takes the single-element batches, `big` is what the large listing lists.
    must(await setup.run(`add table inet ${table}\nadd map inet ${table} ports { type inet_service : verdict; }\nadd map inet ${table} big { type inet_service : verdict; }\n`, { check: false }));
    for (let start = 0; start < elements; start += 5000) {
      const chunk = Array.from({ length: Math.min(5000, elements - start) }, (_, i) => [1 + start + i, { accept: null }]);
      must(await setup.run(JSON.stringify({ nftables: [{ add: { element: { family: 'inet', table, name: 'big', elem: chunk } } }] }), { check: false }));
    }
    const rows: Row[] = [];
    for (const [name, transport] of transports) {
      const port = (i: number): number => 10_000 + i;
      rows.push({ operation: 'add one map element', transport: name, ...(await sample(rounds,
        async (i) => void must(await transport.run(element(port(i), 'add'), { check: false })),
        async (i) => void must(await setup.run(element(port(i), 'delete'), { check: false })))) });
      must(await setup.run(element(port(0), 'add'), { check: false }));
      rows.push({ operation: 'delete one map element', transport: name, ...(await sample(rounds,
        async (i) => void must(await transport.run(element(port(i), 'delete'), { check: false })),
        async (i) => void must(await setup.run(element(port(i + 1), 'add'), { check: false })))) });
      must(await setup.run(element(port(rounds + 3), 'delete'), { check: false }));
      rows.push({ operation: 'check one map element (nft -c)', transport: name, ...(await sample(rounds, async (i) => void must(await transport.run(element(port(i), 'add'), { check: true })))) });
      rows.push({ operation: 'list a map of 0 elements', transport: name, ...(await sample(rounds, async () => void must(await transport.list(['map', 'inet', table, 'ports'])))) });
      rows.push({ operation: `list a map of ${elements} elements`, transport: name, ...(await sample(Math.min(rounds, 20), async () => void must(await transport.list(['map', 'inet', table, 'big'])))) });
    }
    // The whole verified apply through the library (lock, read, load, read back, verify, record).
    const config = (variant: number) => parseConfigObject({ version: 1, mappings: Array.from({ length: mappings }, (_, i) => ({
      name: `m${i}`, hostPort: 20_000 + i, target: `198.18.${Math.floor(i / 200)}.${(i % 200) + 2 + variant}:80`,
    })) });
    for (const [name, transport] of transports) {
      const controller = await Controller.open({ backend: new NftBackend({ runner: createRunner(netns), transport }), netns, stateDir: join(dir, transport.kind) });
      const applyRounds = Math.min(rounds, 20);
      rows.push({ operation: `library apply of ${mappings} mappings, changed`, transport: name, ...(await sample(applyRounds, async (i) => void (await controller.apply(config(i % 2))))) });
      rows.push({ operation: `library apply of ${mappings} mappings, unchanged`, transport: name, ...(await sample(applyRounds, async () => void (await controller.apply(config(1))))) });
      await controller.flush();
    }
    if (process.argv.includes('--json')) {
      process.stdout.write(`${JSON.stringify({ netns: 'scratch', libnftables: binding.libnftablesVersion, node: process.version, rows }, null, 2)}\n`);
    } else {
      const lines = ['| operation | transport | median ms | p90 ms | rounds |', '|---|---|---:|---:|---:|'];
      for (const row of rows) lines.push(`| ${row.operation} | ${row.transport} | ${row.medianMs.toFixed(2)} | ${row.p90Ms.toFixed(2)} | ${row.rounds} |`);
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    return 0;
  } finally {
    await execa('ip', ['netns', 'del', netns], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
