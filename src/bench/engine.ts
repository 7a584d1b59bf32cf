// The engine's incremental path, measured (docs/operations.md, "How an apply reaches the
// kernel"): library apply of an unchanged config, add one mapping through the agent API, and
// the size of one generation, at several sizes; on the fake backend (the engine's own cost)
// and, as root, with the nft backend in a scratch network namespace it creates and deletes.
//   node dist/bench/engine.js            sizes from NATCTL_BENCH_SIZES (default 10,10000,50000)
import { execa } from 'execa';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeBackend } from '../backends/fake.js';
import { parseConfigObject } from '../config/load.js';
import { Controller } from '../engine/controller.js';

const sizes = (process.env.NATCTL_BENCH_SIZES ?? '10,10000,50000').split(',').map(Number);
const rounds = Number(process.env.NATCTL_BENCH_ROUNDS ?? '7');
const withNft = process.env.NATCTL_BENCH_NFT !== '0' && typeof process.getuid === 'function' && process.getuid() === 0;

function config(count: number): unknown {
  const mappings = Array.from({ length: count }, (_, i) => ({ name: `m${i}`, hostPort: 10000 + i, target: `198.18.${Math.floor(i / 250)}.${(i % 250) + 2}:80` }));
  return { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/16'] }], mappings };
}

async function median(run: (i: number) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    await run(i);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

interface Row { backend: string; mappings: number; cold: number; unchanged: number; unchangedFresh: number; addOne: number; removeOne: number; generationBytes: number; editBytes: number }

async function measure(backend: string, count: number, open: (stateDir: string) => Promise<Controller>): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'natctl-bench-engine-'));
  try {
    const stateDir = join(dir, 'state');
    const controller = await open(stateDir);
    const whole = parseConfigObject(config(count));
    const startCold = performance.now();
    const first = await controller.apply(whole);
    const cold = performance.now() - startCold;
    const generationFile = join(controller.state.dir, `gen-${String(first.generation!.generation).padStart(8, '0')}.json`);
    const generationBytes = (await stat(generationFile)).size;
    const unchanged = await median(async () => {
      const result = await controller.apply(whole);
      if (result.kind !== 'noop') throw new Error(`expected a no-op, got ${result.kind}`);
    });
    // A new Controller per call: what a short-lived process pays (reads the generation from disk).
    const unchangedFresh = await median(async () => {
      const result = await (await open(stateDir)).apply(whole);
      if (result.kind !== 'noop') throw new Error(`expected a no-op, got ${result.kind}`);
    });
    const adds: number[] = [];
    const removes: number[] = [];
    let editBytes = 0;
    for (let i = 0; i < rounds; i++) {
      let started = performance.now();
      const added = await controller.addMappings([{ name: 'bench-new', hostPort: 9000, target: '198.18.255.2:80' }]);
      adds.push(performance.now() - started);
      editBytes = (await stat(join(controller.state.dir, `gen-${String(added.generation!.generation).padStart(8, '0')}.json`))).size;
      started = performance.now();
      const removed = await controller.removeMappings(['bench-new']);
      removes.push(performance.now() - started);
      if (added.kind !== 'delta' || removed.kind !== 'delta') throw new Error(`expected deltas, got ${added.kind}/${removed.kind}`);
    }
    const mid = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    return { backend, mappings: count, cold, unchanged, unchangedFresh, addOne: mid(adds), removeOne: mid(removes), generationBytes, editBytes };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const count of sizes) {
    const fake = new FakeBackend(); // one "kernel" per size, shared by the Controllers opened on it
    rows.push(await measure('fake', count, (stateDir) => Controller.open({ backend: fake, stateDir })));
  }
  if (withNft) {
    const netns = `nc-be-${process.pid.toString(36)}`;
    await execa('ip', ['netns', 'add', netns]);
    try {
      for (const count of sizes) {
        rows.push(await measure('nft', count, (stateDir) => Controller.open({ backend: 'nft', netns, stateDir })));
        await execa('ip', ['netns', 'exec', netns, 'nft', 'flush', 'ruleset'], { reject: false });
      }
    } finally {
      await execa('ip', ['netns', 'del', netns], { reject: false });
    }
  }
  const header = '| backend | mappings | cold apply ms | unchanged apply ms (same Controller) | unchanged apply ms (new Controller) | add one ms | remove one ms | one generation KiB (whole) | one generation bytes (add one) |';
  const lines = rows.map((r) => `| ${r.backend} | ${r.mappings} | ${r.cold.toFixed(0)} | ${r.unchanged.toFixed(1)} | ${r.unchangedFresh.toFixed(1)} | ${r.addOne.toFixed(1)} | ${r.removeOne.toFixed(1)} | ${(r.generationBytes / 1024).toFixed(0)} | ${r.editBytes} |`);
  process.stdout.write(`${[header, '|---|---:|---:|---:|---:|---:|---:|---:|---:|', ...lines].join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
