// The engine: plan, apply (lock -> snapshot -> load -> read back -> verify -> record, or
// restore the snapshot), status, flush, history and rollback. The CLI and library callers
// both come through here; nothing here prints or exits.
import { join } from 'node:path';
import type { Backend, BackendName, LiveState, MappingCounters, Ruleset } from '../backends/backend.js';
import { createRunner, isRoot, type Runner } from '../backends/exec.js';
import { FakeBackend } from '../backends/fake.js';
import { NftBackend, nftBinary } from '../backends/nft/backend.js';
import { sweepTempFiles } from '../backends/tempfile.js';
import { parseConfigObject } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ApplyError, EnvironmentError, RollbackError, UsageError } from '../errors.js';
import { prepareHost } from '../host/prep.js';
import { clearStaleFlows } from '../host/conntrack.js';
import { type CheckResult, runDoctor } from '../doctor/checks.js';
import { buildModel } from '../model/build.js';
import { type Model, emptyModel } from '../model/model.js';
import { describeTargets } from '../model/target.js';
import { findRefusedMapping } from './diagnose.js';
import { acquireLock } from './lock.js';
import { diffModels, type Plan } from './plan.js';
import { defaultStateDir, type Generation, sha256, StateStore } from './state.js';

export interface ControllerOptions {
  backend?: 'auto' | BackendName | Backend;
  /** Default: NATCTL_STATE_DIR, else /var/lib/natctl. A netns gets its own subdirectory. */
  stateDir?: string;
  netns?: string;
  /** nft binary; default NATCTL_NFT, else `nft` on PATH. */
  nftPath?: string;
  lockTimeoutMs?: number;
  /** Skip the root check (tests with a fake backend). */
  requireRoot?: boolean;
  /** Called at each phase of an apply (the CLI shows it on a terminal). */
  onProgress?: (phase: string) => void;
}

export interface ApplyResult {
  /** False when the kernel already held exactly this ruleset. */
  changed: boolean;
  dryRun: boolean;
  plan: Plan;
  ruleset: Ruleset;
  generation?: Generation;
  warnings: string[];
  /** Drift repaired by this apply (the kernel differed from the last generation). */
  repairedDrift: boolean;
}

export interface MappingStatus extends MappingCounters {
  target: string;
  state: 'active' | 'missing' | 'unknown';
}

export interface Drift {
  drifted: boolean;
  /** Lines of the normalized listing present in the last generation but not live, and the reverse. */
  missing: string[];
  extra: string[];
}

export interface StatusReport {
  backend: BackendName;
  netns?: string;
  generation?: { number: number; time: string; hash: string };
  active: boolean;
  mappings: MappingStatus[];
  blocked: LiveState['blocked'];
  drift: Drift;
}

export const defaultLockTimeoutMs = 30_000;

function compareLive(expected: string | undefined, live: LiveState | null): Drift {
  const want = new Set((expected ?? '').split('\n').filter(Boolean));
  const have = new Set((live?.normalized ?? '').split('\n').filter(Boolean));
  const missing = [...want].filter((line) => !have.has(line));
  const extra = [...have].filter((line) => !want.has(line));
  return { drifted: missing.length > 0 || extra.length > 0, missing, extra };
}

export class Controller {
  readonly state: StateStore;
  private constructor(
    readonly backend: Backend,
    private readonly runner: Runner,
    stateDir: string,
    private readonly options: ControllerOptions,
  ) {
    this.state = new StateStore(stateDir);
  }

  static async open(options: ControllerOptions = {}): Promise<Controller> {
    const runner = createRunner(options.netns);
    const base = options.stateDir ?? process.env.NATCTL_STATE_DIR ?? defaultStateDir;
    const stateDir = options.netns ? join(base, 'netns', options.netns) : base;
    const choice = options.backend ?? 'auto';
    let backend: Backend;
    if (typeof choice === 'object') backend = choice;
    else if (choice === 'fake') backend = new FakeBackend();
    else if (choice === 'iptables-legacy') throw new EnvironmentError('the iptables-legacy backend is not available in this version of natctl; use --backend nft');
    else {
      // Batch files live in the state dir, so an apply killed mid-way leaves them where the next apply sweeps them.
      const tempDir = join(stateDir, 'tmp');
      backend = new NftBackend(options.nftPath === undefined ? { runner, tempDir } : { runner, tempDir, nftPath: options.nftPath });
    }
    return new Controller(backend, runner, stateDir, options);
  }

  private needRoot(action: string): void {
    if (this.options.requireRoot === false || this.backend.name === 'fake') return;
    if (!isRoot()) {
      throw new EnvironmentError(`natctl ${action} changes or reads the kernel's ruleset and needs root (try: sudo natctl ${action} ...)`);
    }
  }

  private async lastModel(): Promise<{ generation: Generation | undefined; model: Model | undefined }> {
    const generation = await this.state.latest();
    if (!generation || generation.kind !== 'apply') return { generation, model: undefined };
    try {
      return { generation, model: buildModel(parseConfigObject(generation.config)) };
    } catch {
      return { generation, model: undefined };
    }
  }

  async plan(config: Config): Promise<Plan> {
    const model = buildModel(config);
    const { generation, model: lastModel } = await this.lastModel();
    const plan: Plan = diffModels(lastModel, model);
    // With the rights to read the kernel, say whether it still holds the last apply.
    if (isRoot() && generation && this.backend.name !== 'fake') {
      const live = await this.backend.read().catch(() => undefined);
      if (live !== undefined) plan.drift = compareLive(generation.kind === 'apply' ? generation.live : undefined, live).drifted;
    }
    return plan;
  }

  async apply(config: Config, options: { dryRun?: boolean } = {}): Promise<ApplyResult> {
    const model = buildModel(config);
    const ruleset = this.backend.render(model);
    const hash = sha256(ruleset.text);
    if (options.dryRun) {
      const plan = diffModels((await this.lastModel()).model, model);
      return { changed: plan.changes.length > 0, dryRun: true, plan, ruleset, warnings: [], repairedDrift: false };
    }
    this.needRoot('apply');
    return this.locked(() => this.applyLocked(config, model, ruleset, hash));
  }

  /**
   * Everything that changes the kernel runs here: one process at a time per state dir. Batch
   * files a killed holder left behind are swept first (nobody else writes them without the lock).
   */
  private async locked<T>(work: () => Promise<T>): Promise<T> {
    await this.state.ensure();
    this.progress('waiting for the lock');
    const lock = await acquireLock(this.state.dir, this.options.lockTimeoutMs ?? defaultLockTimeoutMs);
    try {
      await sweepTempFiles(join(this.state.dir, 'tmp'));
      return await work();
    } finally {
      await lock.release();
    }
  }

  /**
   * What an apply does to the host besides the ruleset: hairpin, route_localnet, and clearing
   * stale UDP/SCTP flows of mappings that moved or went away (`before` -> `after`). The fake
   * backend has no kernel, so it must never reach the host's interfaces.
   */
  private async hostEffects(before: Model | undefined, after: Model): Promise<string[]> {
    if (this.backend.name === 'fake') return [];
    return [...(await prepareHost(this.runner, after, { stateDir: this.state.dir })), ...(await clearStaleFlows(this.runner, before, after))];
  }

  private progress(phase: string): void {
    this.options.onProgress?.(phase);
  }

  private async applyLocked(config: Config, model: Model, ruleset: Ruleset, hash: string): Promise<ApplyResult> {
    const { generation: last, model: lastModel } = await this.lastModel();
    const plan = diffModels(lastModel, model);
    this.progress('reading the live ruleset');
    const before = await this.backend.read();
    const drift = last ? compareLive(last.live, before) : { drifted: false, missing: [], extra: [] };
    if (last && last.kind === 'apply' && last.hash === hash && before && !drift.drifted) {
      // Already in place: do not rewrite the kernel's table (handles and counters stay).
      const warnings = await this.hostEffects(model, model);
      return { changed: false, dryRun: false, plan, ruleset, generation: last, warnings, repairedDrift: false };
    }

    this.progress(`loading ${model.mappings.length} mapping(s) in one atomic batch`);
    try {
      await this.backend.load(ruleset);
    } catch (error) {
      // The batch is atomic: a refused load changed nothing. Make sure of it.
      const after = await this.backend.read().catch(() => undefined);
      const intact = after !== undefined && (after?.normalized ?? null) === (before?.normalized ?? null);
      if (!intact) await this.restoreOrDie(before, error);
      const culprit = await findRefusedMapping(this.backend, model).catch(() => undefined);
      const index = model.mappings.findIndex((m) => m.name === culprit);
      const where = culprit === undefined ? '' : `\nthe kernel refuses mapping ${JSON.stringify(culprit)} (mappings[${index}])`;
      throw new ApplyError(`apply failed: ${(error as Error).message}${where}\nthe previous ruleset is ${intact ? 'still in place' : 'restored and verified'}`, true, { cause: error });
    }

    this.progress('reading back and verifying');
    let problems: string[];
    let after: LiveState | null = null;
    try {
      after = await this.backend.read();
      problems = this.backend.verify(ruleset, after);
    } catch (error) {
      problems = [`reading the ruleset back failed: ${(error as Error).message}`];
    }
    if (problems.length) {
      this.progress('verification failed: restoring the previous ruleset');
      await this.restoreOrDie(before, new Error(problems.join('; ')));
      throw new ApplyError(`apply failed verification: ${problems.slice(0, 5).join('; ')}\nthe previous ruleset was restored and verified`, true);
    }

    this.progress('host settings (hairpin, route_localnet, stale UDP flows)');
    const warnings = await this.hostEffects(lastModel, model);
    this.progress('recording the generation');
    const generation = await this.state.record({ backend: this.backend.name, hash, kind: 'apply', config, ruleset: ruleset.text, live: after?.normalized ?? '' });
    return { changed: true, dryRun: false, plan, ruleset, generation, warnings, repairedDrift: drift.drifted };
  }

  /** Puts `snapshot` back and checks it; a failure here is the one case that needs an operator. */
  private async restoreOrDie(snapshot: LiveState | null, cause: unknown): Promise<void> {
    try {
      await this.backend.restore(snapshot);
      const now = await this.backend.read();
      if ((now?.normalized ?? null) !== (snapshot?.normalized ?? null)) throw new Error('the restored ruleset differs from the snapshot');
    } catch (error) {
      throw new RollbackError(
        `apply failed (${(cause as Error).message}) and restoring the previous ruleset failed too (${(error as Error).message}).\n` +
          `natctl's table may be partly configured. Inspect it with: nft list table inet natctl; then run: natctl rollback (or natctl flush)`,
        { cause: error },
      );
    }
  }

  async status(): Promise<StatusReport> {
    this.needRoot('status');
    const live = await this.backend.read();
    const { generation, model } = await this.lastModel();
    const counters = new Map((live?.counters ?? []).map((c) => [c.name, c]));
    const mappings: MappingStatus[] = [];
    for (const mapping of model?.mappings ?? []) {
      const found = counters.get(mapping.name);
      counters.delete(mapping.name);
      mappings.push({
        name: mapping.name,
        description: found?.description ?? '',
        connections: found?.connections ?? 0,
        packets: found?.packets ?? 0,
        bytes: found?.bytes ?? 0,
        target: describeTargets(mapping),
        state: found ? 'active' : 'missing',
      });
    }
    for (const found of counters.values()) mappings.push({ ...found, target: '?', state: 'unknown' });
    const expected = generation?.kind === 'apply' ? generation.live : undefined;
    const drift = compareLive(expected, live);
    const report: StatusReport = { backend: this.backend.name, active: live !== null, mappings, blocked: live?.blocked ?? [], drift };
    if (this.runner.netns) report.netns = this.runner.netns;
    if (generation) report.generation = { number: generation.generation, time: generation.time, hash: generation.hash };
    return report;
  }

  async flush(): Promise<void> {
    this.needRoot('flush');
    await this.locked(async () => {
      const { model: lastModel } = await this.lastModel();
      await this.backend.flush();
      await this.hostEffects(lastModel, emptyModel());
      await this.state.record({ backend: this.backend.name, hash: sha256(''), kind: 'flush', config: { version: 1 }, ruleset: '', live: '' });
    });
  }

  /** Host checks; against `config` when given, else the last applied config. */
  async doctor(config?: Config): Promise<CheckResult[]> {
    const model = config ? buildModel(config) : (await this.lastModel().catch(() => ({ model: undefined }))).model;
    const nft = nftBinary(this.options.nftPath);
    return runDoctor(model ? { runner: this.runner, nft, model } : { runner: this.runner, nft });
  }

  history(): Promise<Generation[]> {
    return this.state.list();
  }

  /** Re-applies an earlier generation (default: the one before the latest) through the verified path. */
  async rollback(to?: number): Promise<ApplyResult> {
    const numbers = await this.state.numbers();
    const target = to ?? numbers[numbers.length - 2];
    if (target === undefined) throw new UsageError('there is no earlier generation to roll back to (see natctl history)');
    const generation = await this.state.get(target);
    if (!generation) throw new UsageError(`generation ${target} is not in ${this.state.dir} (kept: ${numbers.join(', ') || 'none'})`);
    if (generation.kind === 'flush') {
      // The plan is what the flush removes: computed before it, against the generation it replaces.
      const plan = diffModels((await this.lastModel()).model, emptyModel());
      await this.flush();
      return { changed: true, dryRun: false, plan, ruleset: { backend: this.backend.name, text: '' }, warnings: [], repairedDrift: false };
    }
    return this.apply(parseConfigObject(generation.config));
  }
}

