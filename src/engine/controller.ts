// The engine: plan, apply (lock -> snapshot -> load -> read back -> verify -> record, or
// restore the snapshot), status, flush, history and rollback. The CLI and library callers
// both come through here; nothing here prints or exits.
import { join, resolve } from 'node:path';
import type { Backend, BackendName, LiveState, MappingCounters, Ruleset } from '../backends/backend.js';
import { createRunner, isRoot, type Runner } from '../backends/exec.js';
import { type BackendChoice, type BackendOptions, createBackend, openBackend } from '../backends/factory.js';
import { parseConfigObject } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ApplyError, EnvironmentError, RollbackError, UsageError } from '../errors.js';
import { prepareHost } from '../host/prep.js';
import { clearStaleFlows } from '../host/conntrack.js';
import { localWarnings } from '../host/local-checks.js';
import type { CheckResult } from '../doctor/checks.js';
import { buildModel } from '../model/build.js';
import { type Model, emptyModel } from '../model/model.js';
import { describeTargets } from '../model/target.js';
import { findRefusedMapping } from './diagnose.js';
import { acquireLock } from './lock.js';
import { diffModels, type Plan } from './plan.js';
import { type CorruptGeneration, defaultStateDir, type Generation, sha256, StateStore } from './state.js';

export interface ControllerOptions {
  /** A backend name (built by src/backends/factory.ts) or a ready backend. Default: auto. */
  backend?: BackendChoice | Backend;
  /** Passed by the factory to the backend it builds (a tool path, say); runner and state dir come from here. */
  backendOptions?: Omit<BackendOptions, 'runner' | 'stateDir'>;
  /** Default: NATCTL_STATE_DIR, else /var/lib/natctl. A netns gets its own subdirectory. */
  stateDir?: string;
  netns?: string;
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

function describeCorrupt(corrupt: CorruptGeneration): string {
  return `generation ${corrupt.generation} is unreadable and was skipped (${corrupt.file}: ${corrupt.reason})`;
}

export class Controller {
  readonly state: StateStore;
  /** Why this backend drives the kernel (`--backend auto` decides in src/backends/factory.ts). */
  backendReason = 'given by the caller';
  private constructor(
    readonly backend: Backend,
    private readonly runner: Runner,
    stateDir: string,
    stateRoot: string,
    private readonly options: ControllerOptions,
  ) {
    this.state = new StateStore(stateDir, stateRoot);
  }

  static async open(options: ControllerOptions = {}): Promise<Controller> {
    const runner = createRunner(options.netns);
    if (options.stateDir === '') throw new UsageError('--state-dir is empty; give a directory (default: /var/lib/natctl)');
    // An empty NATCTL_STATE_DIR is unset (as in `${VAR:-default}`), never the current directory.
    const base = resolve(options.stateDir ?? (process.env.NATCTL_STATE_DIR || defaultStateDir));
    const stateDir = options.netns ? join(base, 'netns', options.netns) : base;
    const choice = options.backend ?? 'auto';
    // Scratch files live in the state dir, so an apply killed mid-way leaves them where the next apply sweeps them.
    // auto prefers the backend of the last generation while it works: no probe on every apply.
    const previous = choice === 'auto' ? (await new StateStore(stateDir, base).latest().catch(() => undefined))?.generation?.backend : undefined;
    const chosen = typeof choice === 'object' ? undefined : await openBackend(choice, { ...options.backendOptions, runner, stateDir, ...(previous === undefined ? {} : { previous }) });
    const controller = new Controller(chosen?.backend ?? (choice as Backend), runner, stateDir, base, options);
    if (chosen) controller.backendReason = chosen.reason;
    return controller;
  }

  private needRoot(action: string): void {
    if (this.options.requireRoot === false || this.backend.touchesHost === false) return;
    if (!isRoot()) {
      throw new EnvironmentError(`natctl ${action} changes or reads the kernel's ruleset and needs root (try: sudo natctl ${action} ...)`);
    }
  }

  /**
   * The newest readable generation and its model. Corrupt generations newer than it are
   * skipped and reported in `warnings`: history never blocks an apply.
   */
  private async lastModel(): Promise<{ generation: Generation | undefined; model: Model | undefined; warnings: string[] }> {
    const { generation, corrupt } = await this.state.latest();
    const warnings = corrupt.map(describeCorrupt);
    if (!generation || generation.kind !== 'apply') return { generation, model: undefined, warnings };
    try {
      return { generation, model: buildModel(parseConfigObject(generation.config)), warnings };
    } catch (error) {
      warnings.push(`generation ${generation.generation} holds a config this version cannot read (${(error as Error).message}); planned against an empty ruleset`);
      return { generation, model: undefined, warnings };
    }
  }

  async plan(config: Config): Promise<Plan> {
    const model = buildModel(config);
    const { generation, model: lastModel, warnings } = await this.lastModel();
    const plan: Plan = diffModels(lastModel, model);
    if (warnings.length) plan.warnings = warnings;
    // With the rights to read the kernel, say whether it still holds the last apply.
    if (isRoot() && generation && generation.backend === this.backend.name && this.backend.touchesHost !== false) {
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
      const last = await this.lastModel();
      const plan = diffModels(last.model, model);
      return { changed: plan.changes.length > 0, dryRun: true, plan, ruleset, warnings: last.warnings, repairedDrift: false };
    }
    this.needRoot('apply');
    return this.locked(() => this.applyLocked(config, model, ruleset, hash));
  }

  /**
   * Everything that changes the kernel runs here: one process at a time per state dir. Scratch
   * files a killed holder left behind (the backend's and the state dir's own) are swept first
   * (nobody else writes them without the lock).
   */
  private async locked<T>(work: () => Promise<T>): Promise<T> {
    await this.state.ensure();
    this.progress('waiting for the lock');
    const lock = await acquireLock(this.state.dir, this.options.lockTimeoutMs ?? defaultLockTimeoutMs);
    try {
      await this.backend.sweep?.();
      await this.state.sweepTemp();
      return await work();
    } finally {
      await lock.release();
    }
  }

  /**
   * What an apply does to the host besides the ruleset: hairpin, route_localnet, and clearing
   * stale UDP/SCTP flows of mappings that moved or went away (`before` -> `after`). A backend
   * without a kernel (touchesHost: false) must never reach the host's interfaces.
   */
  private async hostEffects(before: Model | undefined, after: Model): Promise<string[]> {
    if (this.backend.touchesHost === false) return [];
    const local = await localWarnings(this.runner, after); // hostIp not local, hostPort in use
    return [...local, ...(await prepareHost(this.runner, after, { stateDir: this.state.dir })), ...(await clearStaleFlows(this.runner, before, after))];
  }

  private progress(phase: string): void {
    this.options.onProgress?.(phase);
  }

  private async applyLocked(config: Config, model: Model, ruleset: Ruleset, hash: string): Promise<ApplyResult> {
    const { generation: last, model: lastModel, warnings: historyWarnings } = await this.lastModel();
    const plan = diffModels(lastModel, model);
    this.progress('reading the live ruleset');
    const before = await this.backend.read();
    // A backend switch: the last generation's backend keeps its rules until this one is verified.
    let previous = last?.kind === 'apply' && last.backend !== this.backend.name ? createBackend(last.backend, { ...this.options.backendOptions, runner: this.runner, stateDir: this.state.dir }) : undefined;
    if (previous && !(await previous.version().then(() => true, () => false))) {
      historyWarnings.push(`the last generation was applied with ${previous.name}, which no longer works here: its rules (if any are left) were not removed`);
      previous = undefined;
    }
    const drift = last && !previous ? compareLive(last.live, before) : { drifted: false, missing: [], extra: [] };
    if (last && last.kind === 'apply' && last.hash === hash && before && !drift.drifted) {
      // Already in place: do not rewrite the kernel's table (handles and counters stay).
      const warnings = await this.hostEffects(model, model);
      return { changed: false, dryRun: false, plan, ruleset, generation: last, warnings: [...historyWarnings, ...warnings], repairedDrift: false };
    }
    // Whatever happens next must be undoable: refuse now, untouched, if the snapshot is not.
    const unrestorable = (await this.backend.restorable?.(before)) ?? [];
    if (unrestorable.length) {
      throw new EnvironmentError(`${unrestorable.join('; ')}\nnothing was changed; remove those objects (or run natctl flush) and apply again`);
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
      // The listing is never recorded: what the kernel holds is not what was rendered.
      this.progress('verification failed: restoring the previous ruleset');
      await this.restoreOrDie(before, new Error(problems.join('; ')));
      throw new ApplyError(`apply failed verification: ${problems.slice(0, 5).join('; ')}\nthe previous ruleset was restored and verified`, true);
    }
    if (previous) await this.switchFrom(previous, before);

    // Recorded before the host settings: a generation that cannot be written (ENOSPC, EIO)
    // puts the previous ruleset back, so the kernel never runs a ruleset history lacks.
    this.progress('recording the generation');
    let generation: Generation;
    try {
      generation = await this.state.record({ backend: this.backend.name, hash, kind: 'apply', config, ruleset: ruleset.text, live: after?.normalized ?? '' });
    } catch (error) {
      this.progress('recording failed: restoring the previous ruleset');
      await this.restoreOrDie(before, error);
      throw new ApplyError(`apply failed: the generation could not be recorded in ${this.state.dir} (${(error as Error).message})\nthe previous ruleset was restored and verified; free space in the state dir and apply again`, true, { cause: error });
    }
    this.progress('host settings (hairpin, route_localnet, stale UDP flows)');
    const warnings = await this.hostEffects(lastModel, model);
    return { changed: true, dryRun: false, plan, ruleset, generation, warnings: [...historyWarnings, ...warnings], repairedDrift: drift.drifted };
  }

  /**
   * After a verified load by a new backend: removes the previous backend's rules and reads back
   * that none are left. If that fails, this backend's load is undone (to `before`) and the
   * previous backend's rules are put back, so the previous ruleset stays in place.
   */
  private async switchFrom(previous: Backend, before: LiveState | null): Promise<void> {
    this.progress(`removing the rules of the previous backend (${previous.name})`);
    const snapshot = await previous.read().catch(() => null);
    try {
      await previous.flush();
      if ((await previous.read()) !== null) throw new Error(`${previous.name} still holds natctl's rules after flush`);
    } catch (error) {
      await this.restoreOrDie(before, error);
      const back = await previous.restore(snapshot).then(() => previous.read()).then((now) => (now?.normalized ?? null) === (snapshot?.normalized ?? null), () => false);
      throw new ApplyError(`apply failed: removing the ${previous.name} rules of the last generation failed (${(error as Error).message})\n${back ? 'the previous ruleset is restored and verified' : `the new ruleset was removed; the ${previous.name} rules may be incomplete: ${previous.recoveryHint?.() ?? 'inspect them'}, then natctl rollback`}`, true, { cause: error });
    }
  }

  /**
   * Puts `snapshot` back and reads the kernel to check it. A restore command that reports
   * failure may still have committed (or never been needed): only the read-back decides. A
   * kernel that does not hold the snapshot is the one case that needs an operator.
   */
  private async restoreOrDie(snapshot: LiveState | null, cause: unknown): Promise<void> {
    let restoreError: unknown;
    try {
      await this.backend.restore(snapshot);
    } catch (error) {
      restoreError = error;
    }
    let problem: string | undefined;
    try {
      const now = await this.backend.read();
      if ((now?.normalized ?? null) !== (snapshot?.normalized ?? null)) problem = 'the ruleset read back differs from the snapshot';
    } catch (error) {
      problem = `reading the ruleset back failed: ${(error as Error).message}`;
    }
    if (problem === undefined) return;
    const detail = restoreError === undefined ? problem : `${(restoreError as Error).message}; ${problem}`;
    throw new RollbackError(
      `apply failed (${(cause as Error).message}) and restoring the previous ruleset failed too (${detail}).\n` +
        `natctl's table may be partly configured. ${this.backend.recoveryHint?.() ?? 'Inspect the ruleset'}; then run: natctl rollback (or natctl flush)`,
      { cause: restoreError ?? cause },
    );
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
    return (await this.backend.doctor?.(model)) ?? [];
  }

  history(): Promise<Generation[]> {
    return this.state.list();
  }

  /** History with the generation files that could not be read (skipped, reported). */
  async historyReport(): Promise<{ generations: Generation[]; warnings: string[] }> {
    const { generations, corrupt } = await this.state.scan();
    return { generations, warnings: corrupt.map(describeCorrupt) };
  }

  /** Re-applies an earlier generation (default: the one before the latest) through the verified path. */
  async rollback(to?: number): Promise<ApplyResult> {
    const { generations } = await this.state.scan();
    const numbers = generations.map((g) => g.generation);
    // Corrupt generations are skipped: "the previous one" is the previous readable one.
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
    // With `auto`, a generation goes back to the backend that applied it (a switch, in one apply).
    if ((this.options.backend ?? 'auto') === 'auto' && generation.backend !== this.backend.name) {
      return (await Controller.open({ ...this.options, backend: generation.backend })).apply(parseConfigObject(generation.config));
    }
    return this.apply(parseConfigObject(generation.config));
  }
}

