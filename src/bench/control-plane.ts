// The control-plane half of the bench: for each N, in one scratch namespace, raw nft loads of
// natctl's render and of the map-based reference, then per transport the CLI (cold apply,
// unchanged apply, add one, remove one, status; peak RSS of each; state dir after 5 applies)
// and the library (cold, unchanged, add one, remove one). Every operation has a time limit;
// one that times out is marked so and not tried again at a larger N, and nothing starts after
// the run's budget is spent.
import { lstat, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderNftDocument } from '../backends/nft/render.js';
import { documentToBatchText } from '../backends/nft/text.js';
import { parseConfigObject } from '../config/load.js';
import { buildModel } from '../model/build.js';
import { benchConfig, benchNetwork, extraMapping } from './configs.js';
import { formatMB, formatMs } from './format.js';
import type { BenchOptions, Transport } from './options.js';
import { runTimed } from './proc.js';
import { referenceRuleset } from './reference.js';
import { median, type Measurement, type Operation, type Outcome, type StateDirSize, type Via } from './results.js';
import type { WorkerCommand } from './library-worker.js';
import { LibraryWorker, transportEnv } from './worker-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const cliScript = join(here, '../cli/main.js');
const rssProbe = pathToFileURL(join(here, 'rss-probe.js')).href;

/** Past this, an operation is not repeated for more rounds. */
export const slowMs = 10_000;
/** Rounds of the raw loads, whatever --rounds says (docs/performance.md, "How it is measured"). */
export const rawRounds = 5;

/** One timed run: its wall time, and the CLI's peak RSS when measured. */
type Sample = { kind: 'ok'; ms: number; rssKiB?: number } | { kind: 'timeout'; limitMs: number; rssKiB?: number } | { kind: 'error'; message: string };

interface Step {
  op: Operation;
  /** Untimed preparation before each round (emptying the ruleset for a cold load). */
  before?: () => Promise<void>;
  run: (limitMs: number) => Promise<Sample>;
}

export interface ControlPlaneRun {
  options: BenchOptions;
  netns: string;
  workDir: string;
  /** Date.now() after which nothing new starts. */
  deadline: number;
  log: (line: string) => void;
}

export async function dirBytes(path: string): Promise<number> {
  const info = await lstat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path)) total += await dirBytes(join(path, entry));
  return total;
}

export class ControlPlane {
  readonly measurements: Measurement[] = [];
  readonly stateDirs: StateDirSize[] = [];
  /** "op/via/transport" -> the N at which it timed out. */
  private readonly timedOutAt = new Map<string, number>();

  constructor(private readonly run: ControlPlaneRun) {}

  private remainingMs(): number {
    return this.run.deadline - Date.now();
  }

  private limitMs(): number {
    return Math.max(0, Math.min(this.run.options.opTimeoutMs, this.remainingMs()));
  }

  private nft(args: string[]) {
    return runTimed('ip', ['netns', 'exec', this.run.netns, 'nft', ...args], { timeoutMs: Math.max(this.limitMs(), 10_000), env: { LC_ALL: 'C' } });
  }

  private async flushRuleset(): Promise<void> {
    const result = await this.nft(['flush', 'ruleset']);
    if (result.kind !== 'ok') throw new Error(`nft flush ruleset in ${this.run.netns}: ${result.kind === 'failed' ? result.message : 'timed out'}`);
  }

  private record(op: Operation, via: Via, transport: Transport | null, n: number, outcome: Outcome): void {
    this.measurements.push({ op, via, transport, n, outcome });
    const text = outcome.kind === 'ok' ? `${formatMs(outcome.medianMs)}${outcome.peakRssKiB ? `, peak RSS ${formatMB(outcome.peakRssKiB * 1024)}` : ''}` : outcome.kind === 'timeout' ? `timed out (> ${formatMs(outcome.limitMs)})${outcome.peakRssKiB ? `, peak RSS > ${formatMB(outcome.peakRssKiB * 1024)}` : ''}` : `${outcome.kind}: ${'reason' in outcome ? outcome.reason : outcome.message}`;
    this.run.log(`  N=${n} ${via}${transport ? `/${transport}` : ''} ${op}: ${text}`);
  }

  private skipReason(op: Operation, via: Via, transport: Transport | null): string | undefined {
    const at = this.timedOutAt.get(`${op}/${via}/${transport}`);
    if (at !== undefined) return `timed out at N = ${at}`;
    if (this.remainingMs() < 1000) return 'run budget used up';
    return undefined;
  }

  /**
   * Runs `steps` interleaved for the configured rounds (round 1: every step, round 2: ...) and
   * records one measurement per step. The first step that fails or times out ends the series;
   * returns whether every step completed every round.
   */
  async series(via: Via, transport: Transport | null, n: number, steps: Step[], rounds = this.run.options.rounds): Promise<boolean> {
    const samples = new Map<Operation, { ms: number[]; rss: number[] }>(steps.map((s) => [s.op, { ms: [], rss: [] }]));
    const outcomes = new Map<Operation, Outcome>();
    for (const step of steps) {
      const reason = this.skipReason(step.op, via, transport);
      if (reason) outcomes.set(step.op, { kind: 'skipped', reason });
    }
    let failed = outcomes.size > 0;
    for (let round = 0; round < rounds && !failed; round++) {
      // An operation that takes seconds is measured once: repeating it adds little and costs minutes.
      if (round > 0 && steps.some((step) => (samples.get(step.op)!.ms.at(-1) ?? 0) > slowMs)) break;
      for (const step of steps) {
        if (this.remainingMs() < 1000) {
          outcomes.set(step.op, { kind: 'skipped', reason: 'run budget used up' });
          failed = true;
          break;
        }
        try {
          await step.before?.();
        } catch (error) {
          outcomes.set(step.op, { kind: 'error', message: (error as Error).message });
          failed = true;
          break;
        }
        const sample = await step.run(this.limitMs());
        if (sample.kind === 'ok') {
          samples.get(step.op)!.ms.push(sample.ms);
          if (sample.rssKiB !== undefined) samples.get(step.op)!.rss.push(sample.rssKiB);
          continue;
        }
        if (sample.kind === 'timeout') {
          outcomes.set(step.op, sample.rssKiB === undefined ? { kind: 'timeout', limitMs: sample.limitMs } : { kind: 'timeout', limitMs: sample.limitMs, peakRssKiB: sample.rssKiB });
          this.timedOutAt.set(`${step.op}/${via}/${transport}`, n);
        } else {
          outcomes.set(step.op, { kind: 'error', message: sample.message });
        }
        failed = true;
        break;
      }
    }
    for (const step of steps) {
      const got = samples.get(step.op)!;
      let outcome = outcomes.get(step.op);
      if (!outcome && got.ms.length > 0) {
        outcome = { kind: 'ok', samplesMs: got.ms.map((ms) => Math.round(ms * 100) / 100), medianMs: median(got.ms)! };
        if (got.rss.length > 0) outcome.peakRssKiB = Math.max(...got.rss);
      }
      this.record(step.op, via, transport, n, outcome ?? { kind: 'skipped', reason: 'an earlier step of the same series did not complete' });
    }
    return !failed;
  }

  private skipAll(via: Via, transport: Transport, n: number, ops: Operation[], reason: string): void {
    for (const op of ops) this.record(op, via, transport, n, { kind: 'skipped', reason });
  }

  async measureSize(n: number): Promise<void> {
    const dir = this.run.workDir;
    const files = { a: join(dir, `config-${n}.json`), b: join(dir, `config-${n}-plus1.json`), render: join(dir, `render-${n}.nft`), reference: join(dir, `reference-${n}.nft`) };
    await writeFile(files.a, JSON.stringify(benchConfig(n)));
    await writeFile(files.b, JSON.stringify(benchConfig(n, true)));
    // Exactly what natctl loads: the text batch of its render (nft 1.0.6 JSON cannot declare its data maps).
    await writeFile(files.render, documentToBatchText(renderNftDocument(buildModel(parseConfigObject(benchConfig(n))))));
    await writeFile(files.reference, referenceRuleset(n));
    const rawLoad = (args: string[]) => async (limitMs: number): Promise<Sample> => toSample(await runTimed('ip', ['netns', 'exec', this.run.netns, 'nft', ...args], { timeoutMs: limitMs, env: { LC_ALL: 'C' } }), limitMs);
    const flush = () => this.flushRuleset();
    // The two raw loads alternate within one series (5 rounds at least): their ratio is a target, and on
    // a shared machine two loads measured a minute apart differ by more than the two rulesets do.
    await this.series('nft', null, n, [
      { op: 'raw-render', before: flush, run: rawLoad(['-f', files.render]) },
      { op: 'raw-reference', before: flush, run: rawLoad(['-f', files.reference]) },
    ], Math.max(this.run.options.rounds, rawRounds));
    for (const transport of this.run.options.transports) {
      await this.cli(n, transport, files);
      await this.library(n, transport, files);
    }
    await this.flushRuleset().catch(() => undefined);
  }

  private async cli(n: number, transport: Transport, files: { a: string; b: string }): Promise<void> {
    const stateDir = join(this.run.workDir, `state-cli-${transport}`);
    const rssFile = join(this.run.workDir, 'rss');
    let applies = 0;
    const size: StateDirSize = { transport, n };
    const countApply = async (): Promise<void> => {
      applies++;
      if (applies === 5) size.bytes = await dirBytes(stateDir);
    };
    const natctl = (args: string[], isApply: boolean) => async (limitMs: number): Promise<Sample> => {
      await rm(rssFile, { force: true });
      const outcome = await runTimed(process.execPath, ['--import', rssProbe, cliScript, '--netns', this.run.netns, '--state-dir', stateDir, ...args], {
        timeoutMs: limitMs,
        env: { ...transportEnv(transport), NATCTL_BENCH_RSS_FILE: rssFile },
        rssOnTimeout: true,
      });
      const sample = toSample(outcome, limitMs);
      if (sample.kind === 'ok') {
        const rss = Number(await readFile(rssFile, 'utf8').catch(() => ''));
        if (rss > 0) sample.rssKiB = rss;
        if (isApply) await countApply();
      }
      return sample;
    };
    const cold = await this.series('cli', transport, n, [{
      op: 'cold',
      before: async () => {
        await this.flushRuleset();
        await rm(stateDir, { recursive: true, force: true });
        applies = 0;
      },
      run: natctl(['apply', '-f', files.a], true),
    }]);
    const rest: Operation[] = ['unchanged', 'add', 'remove', 'status'];
    if (!cold) {
      this.skipAll('cli', transport, n, rest, 'the cold apply did not complete');
      this.stateDirs.push({ ...size, note: 'the cold apply did not complete' });
      return;
    }
    await this.series('cli', transport, n, [{ op: 'unchanged', run: natctl(['apply', '-f', files.a], true) }]);
    // One mapping by name, as an agent's script does it (`natctl add` / `natctl rm`).
    const extra = extraMapping(n);
    await this.series('cli', transport, n, [
      { op: 'add', run: natctl(['add', '--name', extra.name, '--host-port', String(extra.hostPort), '--target', `${extra.address}:${extra.port}`, '--network', benchNetwork.name], true) },
      { op: 'remove', run: natctl(['rm', extra.name], true) },
    ]);
    // Up to 5 applies in all (the same config changes back and forth), then measure the state dir.
    for (let i = 0; applies < 5 && i < 5; i++) {
      const sample = await natctl(['apply', '-f', applies % 2 === 1 ? files.b : files.a], true)(this.limitMs());
      if (sample.kind !== 'ok') {
        size.note = `apply ${applies + 1} of 5 did not complete (${sample.kind})`;
        break;
      }
    }
    this.stateDirs.push(size);
    await this.series('cli', transport, n, [{ op: 'status', run: natctl(['status'], false) }]);
  }

  private async library(n: number, transport: Transport, files: { a: string; b: string }): Promise<void> {
    const ops: Operation[] = ['cold', 'unchanged', 'add', 'remove'];
    const stateDir = join(this.run.workDir, `state-lib-${transport}`);
    const worker = new LibraryWorker(this.run.netns, stateDir, transport);
    try {
      for (const [name, file] of [['a', files.a], ['b', files.b]] as const) {
        const loaded = await worker.send({ cmd: 'load', name, file }, Math.max(this.limitMs(), 10_000));
        if (loaded.kind !== 'reply' || !loaded.reply.ok) {
          this.skipAll('library', transport, n, ops, `the library could not load the config: ${describe(loaded)}`);
          return;
        }
      }
      const call = (command: WorkerCommand) => async (limitMs: number): Promise<Sample> => {
        const outcome = await worker.send(command, limitMs);
        if (outcome.kind === 'timeout') return { kind: 'timeout', limitMs };
        if (outcome.kind === 'reply' && outcome.reply.ok && outcome.reply.ms !== undefined) return { kind: 'ok', ms: outcome.reply.ms };
        return { kind: 'error', message: describe(outcome) };
      };
      const reset = async (): Promise<void> => {
        const outcome = await worker.send({ cmd: 'reset' }, Math.max(this.limitMs(), 10_000));
        if (outcome.kind !== 'reply' || !outcome.reply.ok) throw new Error(`reset: ${describe(outcome)}`);
      };
      const apply = (name: 'a' | 'b') => call({ cmd: 'apply', name });
      if (!(await this.series('library', transport, n, [{ op: 'cold', before: reset, run: apply('a') }]))) {
        this.skipAll('library', transport, n, ops.slice(1), 'the cold apply did not complete');
        return;
      }
      // Calls of a few milliseconds: more rounds for a steady median (the first call of a process
      // also builds what later calls reuse, e.g. the agent API's index; a GC pause lands anywhere).
      const quickRounds = Math.max(this.run.options.rounds, 9);
      await this.series('library', transport, n, [{ op: 'unchanged', run: apply('a') }], quickRounds);
      // The agent API (docs/embedding.md): one mapping added and removed by name.
      const extra = extraMapping(n);
      await this.series('library', transport, n, [
        { op: 'add', run: call({ cmd: 'add', mapping: { name: extra.name, hostPort: extra.hostPort, target: `${extra.address}:${extra.port}`, network: benchNetwork.name } }) },
        { op: 'remove', run: call({ cmd: 'remove', name: extra.name }) },
      ], quickRounds);
    } finally {
      worker.stop();
    }
  }
}

function describe(outcome: { kind: 'reply'; reply: { ok: boolean; error?: string } } | { kind: 'timeout' } | { kind: 'died'; message: string }): string {
  if (outcome.kind === 'timeout') return 'timed out';
  if (outcome.kind === 'died') return outcome.message;
  return outcome.reply.ok ? 'ok' : (outcome.reply.error ?? 'failed');
}

function toSample(outcome: Awaited<ReturnType<typeof runTimed>>, limitMs: number): Sample {
  if (outcome.kind === 'ok') return { kind: 'ok', ms: outcome.ms };
  if (outcome.kind === 'timeout') return outcome.peakRssKiB === undefined ? { kind: 'timeout', limitMs } : { kind: 'timeout', limitMs, rssKiB: outcome.peakRssKiB };
  return { kind: 'error', message: `exit ${outcome.exitCode ?? '?'}: ${outcome.message}` };
}
