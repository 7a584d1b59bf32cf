// npm run bench: natctl at N mappings against the kernel's own limits, in one run, inside
// scratch network namespaces this process creates and always deletes (finally, and on
// SIGINT/SIGTERM/SIGHUP). Prints a table, writes bench-results/latest.json (quick mode:
// quick.json) with the machine description, and rewrites its section of docs/performance.md
// (between the bench markers). Knobs: src/bench/options.ts. Needs root; never touches the
// root namespace. A script, never a test: tests assert no timings.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { isRoot } from '../backends/exec.js';
import { nativeBindingStatus } from '../backends/native.js';
import type { Sandbox } from '../sandbox/topology.js';
import { ControlPlane } from './control-plane.js';
import { measureDataPlane } from './data-plane.js';
import { describeMachine } from './machine.js';
import { BenchOptionError, parseOptions } from './options.js';
import { killAll } from './proc.js';
import { markdownSection, replaceSection, textReport } from './report.js';
import type { BenchResults, DataPlaneResult } from './results.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (line: string): void => void process.stderr.write(`${line}\n`);

const netns = `nc-bench-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const sandboxes: Sandbox[] = [];
let workDir: string | undefined;
let cleaning: Promise<void> | undefined;

/** Ends our children, deletes our namespaces and temp files; safe to call twice. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    killAll();
    await Promise.allSettled(sandboxes.map((s) => s.destroy()));
    await execa('ip', ['netns', 'del', netns], { reject: false });
    if (workDir) await rm(workDir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    log(`bench: ${signal}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function writeDocs(results: BenchResults): Promise<void> {
  const docFile = join(root, 'docs/performance.md');
  const before = await readFile(docFile, 'utf8').catch(() => undefined);
  await writeFile(docFile, replaceSection(before, markdownSection(results)));
  log('bench: updated docs/performance.md (between the bench markers)');
}

async function main(): Promise<number> {
  // Only whether it loads and why not: the status type grows with the addon (src/backends/native.ts).
  const status: { loaded: boolean; reason?: string } = nativeBindingStatus();
  const addon = { loaded: status.loaded, reason: status.reason ?? (status.loaded ? 'loaded' : 'unknown') };
  let options;
  try {
    options = parseOptions(process.env, addon);
  } catch (error) {
    if (error instanceof BenchOptionError) {
      log(`bench: ${error.message}`);
      return 2;
    }
    throw error;
  }
  // NATCTL_BENCH_FROM=FILE: print and write the docs from an earlier run's JSON; measures nothing.
  if (process.env.NATCTL_BENCH_FROM) {
    const results = JSON.parse(await readFile(process.env.NATCTL_BENCH_FROM, 'utf8')) as BenchResults;
    process.stdout.write(textReport(results));
    if (options.writeDocs) await writeDocs(results);
    return 0;
  }
  if (!isRoot()) {
    log('bench: needs root (it creates scratch network namespaces)');
    return 3;
  }
  if (!addon.loaded) log(`addon: not available (${addon.reason})`);
  log(`bench: N = ${options.sizes.join(', ')}; transports: ${options.transports.join(', ')}; ${options.rounds} round(s)${options.quick ? ' (quick)' : ''}`);
  const started = Date.now();
  const machine = await describeMachine(root, addon);
  workDir = await mkdtemp(join(tmpdir(), 'natctl-bench-'));
  try {
    await execa('ip', ['netns', 'add', netns]);
    await execa('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    // natctl's host settings look for the config's network interface.
    await execa('ip', ['-n', netns, 'link', 'add', 'lab0', 'type', 'bridge']);
    const control = new ControlPlane({ options, netns, workDir, deadline: started + options.budgetMs, log });
    for (const n of options.sizes) {
      log(`bench: control plane, N = ${n}`);
      await control.measureSize(n);
    }
    log('bench: data plane');
    const dataPlane = await measureDataPlane({ options, maxN: options.sizes[options.sizes.length - 1]!, workDir, sandboxes, log }).catch(
      (error: unknown): DataPlaneResult => ({ client: '', cpu: 0, rounds: 0, secondsPerPoint: 0, points: [], note: `not measured: ${(error as Error).message.split('\n')[0]}` }),
    );
    const results: BenchResults = {
      machine,
      settings: { sizes: options.sizes, rounds: options.rounds, quick: options.quick, opTimeoutMs: options.opTimeoutMs, budgetMs: options.budgetMs, transports: options.transports },
      measurements: control.measurements,
      stateDir: control.stateDirs,
      dataPlane,
      durationS: Math.round((Date.now() - started) / 100) / 10,
    };
    process.stdout.write(textReport(results));
    const resultsFile = join(root, options.resultsFile);
    await mkdir(dirname(resultsFile), { recursive: true });
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    log(`bench: wrote ${options.resultsFile}`);
    if (options.writeDocs) {
      await writeDocs(results);
    } else {
      log('bench: docs/performance.md left as it is (quick mode or NATCTL_BENCH_DOCS=0)');
    }
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (error: unknown) => {
    log(`bench: ${(error as Error).stack ?? String(error)}`);
    await cleanup();
    process.exitCode = 1;
  },
);
