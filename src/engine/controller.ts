// The engine: plan, apply (lock -> snapshot -> load -> read back -> verify -> record, or
// restore the snapshot), status, flush, history and rollback. The CLI and library callers
// both come through here; nothing here prints or exits.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Backend, BackendName, Delta, LiveState, MappingCounters, Ruleset } from '../backends/backend.js';
import { createRunner, isRoot, type Runner } from '../backends/exec.js';
import { type BackendChoice, type BackendOptions, createBackend, openBackend } from '../backends/factory.js';
import { parseConfigObject } from '../config/load.js';
import type { Config, MappingConfig } from '../config/schema.js';
import { ApplyError, ConfigError, EnvironmentError, RollbackError, UsageError } from '../errors.js';
import { hostEffects } from '../host/effects.js';
import type { CheckResult } from '../doctor/checks.js';
import { buildMappingsAgainst, buildModel, MappingIndex } from '../model/build.js';
import { type MappingChanges, sameMapping } from '../model/diff.js';
import { type Mapping, type Model, emptyModel } from '../model/model.js';
import { describeTargets } from '../model/target.js';
import { findRefusedMapping } from './diagnose.js';
import { acquireLock } from './lock.js';
import { type Change, diffModels, type Plan } from './plan.js';
import { type CorruptGeneration, defaultStateDir, type Generation, type MappingEdits, maxKeptListing, sha256, StateStore } from './state.js';

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
  /**
   * Every Nth apply through this controller that would skip the listing (a no-op or a delta)
   * first compares the whole live ruleset with the last generation (tampering inside the table
   * that left the marker in place is then repaired). Default 10; 0 never. `natctl watch` keeps
   * one controller, so with --resync 60 a full check runs at least every 10 minutes.
   */
  fullCheckEvery?: number;
}

export interface ApplyOptions {
  /** Show what would change; touch nothing. */
  dryRun?: boolean;
  /** Compare the whole live ruleset with the last generation before deciding (a full check). */
  verifyFull?: boolean;
}

/** How an apply changed the kernel: a whole ruleset, only the difference, or nothing. */
export type ApplyKind = 'full' | 'delta' | 'noop';

/** One batch of changes by name for the agent API (docs/embedding.md). */
export interface MappingChange {
  /** New mappings; a name already applied is refused (use `replace`). */
  add?: MappingConfig[];
  /** Mappings that replace the applied ones of the same name (added when absent). */
  replace?: MappingConfig[];
  /** Names of applied mappings to remove; an unknown name is refused. */
  remove?: string[];
}

export interface ApplyResult {
  /** full: the whole ruleset was loaded; delta: only the difference; noop: nothing was sent. */
  kind: ApplyKind;
  /** False when the kernel already held exactly this ruleset. */
  changed: boolean;
  dryRun: boolean;
  plan: Plan;
  /** The full ruleset of this config (rendered when first read: a delta or no-op never needs it). */
  ruleset: Ruleset;
  /** The delta loaded (kind delta). */
  delta?: Delta;
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
  /**
   * Lines of the normalized listing present in the last generation but not live, and the
   * reverse, when the generation kept its listing (small rulesets); otherwise `missing` holds
   * the backend's verify problems (live against the render of the generation's config).
   */
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
export const defaultFullCheckEvery = 10;

const natctlVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * What a generation's `hash` names: natctl's version (a new version may render differently),
 * the backend and the config. Equal hashes mean the same ruleset; the stamp is its first 16
 * hex digits (the marker the backend keeps in the kernel, docs/operations.md).
 */
export function configHash(backend: BackendName, config: Config): string {
  return sha256(`natctl ${natctlVersion}\n${backend}\n${JSON.stringify(config)}`);
}

/**
 * The hash of a config made by the agent API: the parent generation's hash and the edits,
 * so that it costs the change, not the 50,000 mappings. Another hash than configHash of the
 * same config: a whole-config apply of it afterwards finds no mapping to change and sends
 * nothing (applyLocked), so the two never disagree about the kernel.
 */
function editsHash(backend: BackendName, parent: string, edits: MappingEdits): string {
  return sha256(`natctl ${natctlVersion}\n${backend}\nedits of ${parent}\n${JSON.stringify(edits)}`);
}

/** What an agent API call already knows about its change (applyLocked needs no diff then). */
interface KnownChange {
  plan: Plan;
  /** Recorded as the generation when the last generation is an apply (StateStore.record). */
  edits: MappingEdits;
  /** The index of the new model: the last one with the change. */
  index: (model: Model) => MappingIndex;
}


function mappingChangesOf(plan: Plan): MappingChanges {
  const changes: MappingChanges = { added: [], removed: [] };
  for (const change of plan.changes) {
    if (change.kind !== 'mapping') continue;
    if (change.op !== 'remove') changes.added.push(change.after as Mapping);
    if (change.op !== 'add') changes.removed.push(change.before as Mapping);
  }
  return changes;
}

/** A generation read or written, keyed by its file; `model` null: not built yet, undefined: unreadable. */
interface CacheEntry {
  key: string;
  generation: Generation;
  model: Model | undefined | null;
  index?: MappingIndex;
}

/** The newest readable generation; its model is built on first use and cached. */
interface LastApplied {
  generation: Generation | undefined;
  /** The generation when it is an apply with a stamp. */
  apply: (Generation & { stamp: string }) | undefined;
  model(): Model | undefined;
  index(): MappingIndex;
  warnings: string[];
  /** The generation numbers listed in the state dir (under the lock they stay true until a record). */
  numbers: number[];
}

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


function countObjects(model: Model): number {
  return model.networks.length + model.mappings.length + model.snat.length + model.block.length;
}

/** An ApplyResult whose full ruleset is rendered only if someone reads it (a delta never needs it). */
function withRuleset(result: Omit<ApplyResult, 'ruleset'>, render: () => Ruleset): ApplyResult {
  let ruleset: Ruleset | undefined;
  return Object.defineProperty(result, 'ruleset', { get: () => (ruleset ??= render()), enumerable: false, configurable: true }) as ApplyResult;
}

/** Field types of the agent API's new mappings, checked alone; problems name `path(i)`. */
function parseNewMappings(mappings: MappingConfig[], path: (i: number) => string): MappingConfig[] {
  let parsed: MappingConfig[];
  try {
    parsed = parseConfigObject({ version: 1, mappings }).mappings ?? [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(error.problems.map((p) => ({ ...p, path: p.path.replace(/^mappings\[(\d+)\]/, (_all, i: string) => path(Number(i))) })));
  }
  return parsed;
}

export class Controller {
  readonly state: StateStore;
  /** Why this backend drives the kernel (`--backend auto` decides in src/backends/factory.ts). */
  backendReason = 'given by the caller';
  /** The last generation this controller read or wrote, with its model (agents apply again and again). */
  private cache: CacheEntry | undefined;
  /** Applies that skipped the listing since the last full check (fullCheckEvery). */
  private cheapApplies = 0;

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
    const store = new StateStore(stateDir, base);
    const latest = choice === 'auto' ? await store.latest().catch(() => undefined) : undefined;
    const previous = latest?.generation?.backend;
    const chosen = typeof choice === 'object' ? undefined : await openBackend(choice, { ...options.backendOptions, runner, stateDir, ...(previous === undefined ? {} : { previous }) });
    const controller = new Controller(chosen?.backend ?? (choice as Backend), runner, stateDir, base, options);
    if (chosen) controller.backendReason = chosen.reason;
    // The generation just read is the one the first apply starts from: not read twice.
    if (latest?.generation && !latest.corrupt.length) {
      const key = await store.fileKey(latest.generation.generation);
      if (key !== undefined) controller.cache = { key, generation: latest.generation, model: null };
    }
    return controller;
  }

  private needRoot(action: string): void {
    if (this.options.requireRoot === false || this.backend.touchesHost === false) return;
    if (!isRoot()) {
      throw new EnvironmentError(`natctl ${action} changes or reads the kernel's ruleset and needs root (try: sudo natctl ${action} ...)`);
    }
  }

  /**
   * The newest readable generation; its model is built only when asked for. Corrupt
   * generations newer than it are skipped and reported in `warnings`: history never blocks an
   * apply. The generation this controller last read or wrote is kept in memory while its file
   * is unchanged (an agent does not parse 50,000 mappings again on every apply).
   */
  private async last(): Promise<LastApplied> {
    const numbers = await this.state.numbers();
    const newest = numbers[numbers.length - 1];
    const warnings: string[] = [];
    let entry = this.cache;
    if (newest === undefined || !entry || (await this.state.fileKey(newest)) !== entry.key) {
      entry = undefined;
      this.cache = undefined;
      const latest = await this.state.latest();
      warnings.push(...latest.corrupt.map(describeCorrupt));
      if (latest.generation) {
        const key = latest.generation.generation === newest ? await this.state.fileKey(newest) : undefined;
        entry = { key: key ?? '', generation: latest.generation, model: null };
        if (key !== undefined) this.cache = entry;
      }
    }
    const found = entry;
    const generation = found?.generation;
    const modelOf = (): Model | undefined => {
      if (!found) return undefined;
      if (found.model !== null) return found.model;
      found.model = undefined;
      if (found.generation.kind === 'apply') {
        try {
          found.model = buildModel(parseConfigObject(found.generation.config));
        } catch (error) {
          warnings.push(`generation ${found.generation.generation} holds a config this version cannot read (${(error as Error).message}); planned against an empty ruleset`);
        }
      }
      return found.model;
    };
    const apply = generation?.kind === 'apply' && generation.stamp !== undefined ? (generation as Generation & { stamp: string }) : undefined;
    const index = (): MappingIndex => {
      const built = modelOf() ?? emptyModel();
      return found ? (found.index ??= new MappingIndex(built)) : new MappingIndex(built);
    };
    return { generation, apply, model: modelOf, index, warnings, numbers };
  }

  /** Remembers a generation just written with its model: the next apply starts from memory. */
  private async remember(generation: Generation, model: Model, index?: MappingIndex): Promise<void> {
    const key = await this.state.fileKey(generation.generation);
    this.cache = key === undefined ? undefined : { key, generation, model, ...(index ? { index } : {}) };
  }

  /**
   * Drift of `live` from the last generation: line by line when the generation kept its
   * listing, else the backend's verify of the render of the generation's config.
   */
  private drift(last: LastApplied, live: LiveState | null): Drift {
    const generation = last.generation;
    if (!generation) return compareLive(undefined, live);
    if (generation.kind !== 'apply') return compareLive('', live);
    if (generation.live !== undefined) return compareLive(generation.live, live);
    const model = last.model();
    if (!model) return { drifted: live !== null, missing: [], extra: live ? ['natctl holds a ruleset, but the last generation cannot be read'] : [] };
    const problems = this.backend.verify(this.backend.render(model, generation.stamp !== undefined ? { stamp: generation.stamp } : {}), live);
    return { drifted: problems.length > 0, missing: problems, extra: [] };
  }

  async plan(config: Config): Promise<Plan> {
    const model = buildModel(config);
    const last = await this.last();
    const plan: Plan = diffModels(last.model(), model);
    // With the rights to read the kernel, say whether it still holds the last apply.
    if (isRoot() && last.generation && last.generation.backend === this.backend.name && this.backend.touchesHost !== false) {
      const live = await this.backend.read().catch(() => undefined);
      if (live !== undefined) plan.drift = this.drift(last, live).drifted;
    }
    if (last.warnings.length) plan.warnings = last.warnings;
    return plan;
  }

  async apply(config: Config, options: ApplyOptions = {}): Promise<ApplyResult> {
    if (options.dryRun) {
      const model = buildModel(config);
      const last = await this.last();
      const plan = diffModels(last.model(), model);
      return withRuleset({ kind: 'noop', changed: plan.changes.length > 0, dryRun: true, plan, warnings: last.warnings, repairedDrift: false }, () => this.backend.render(model));
    }
    this.needRoot('apply');
    const hash = configHash(this.backend.name, config);
    // Bad input is refused before the lock and before the kernel; a config identical to the
    // last applied one was valid then and is not built again (the no-op costs a hash).
    let model: Model | undefined;
    const modelOf = (): Model => (model ??= buildModel(config));
    if (this.cache?.generation.hash !== hash) modelOf();
    return this.locked(() => this.applyLocked(config, modelOf, hash, options));
  }

  /**
   * The agent API (docs/embedding.md): adds, replaces and removes mappings by name on top of
   * the last applied config, with apply's lock, verification, rollback and generations. Only
   * the new mappings are built and validated; conflicts are checked against an index of the
   * last model, with the rules of buildModel.
   */
  async changeMappings(change: MappingChange, options: Omit<ApplyOptions, 'dryRun'> = {}): Promise<ApplyResult> {
    const add = change.add ?? [];
    const replace = change.replace ?? [];
    const remove = change.remove ?? [];
    // Field types first, for the new mappings alone (the paths say which argument).
    const parsed = parseNewMappings([...add, ...replace], (i) => (i < add.length ? `add[${i}]` : `replace[${i - add.length}]`));
    const unnamed = replace.flatMap((m, i) => (m.name === undefined ? [{ path: `replace[${i}].name`, message: 'is required: a mapping is replaced by name' }] : []));
    if (unnamed.length) throw new ConfigError(unnamed);
    this.needRoot('apply');
    return this.locked(async () => {
      const last = await this.last();
      if (last.generation?.kind === 'apply' && !last.model()) {
        throw new UsageError(`the last generation (${last.generation.generation}) cannot be read: apply a whole config first (natctl apply -f FILE)`);
      }
      const base = last.generation?.kind === 'apply' ? last.generation.config : { version: 1 as const };
      const index = last.index();
      const problems = remove.flatMap((name, i) => (index.has(name) ? [] : [{ path: `remove[${i}]`, message: `${JSON.stringify(name)} is not an applied mapping` }]));
      if (problems.length) throw new ConfigError(problems);
      const replacing = new Set([...remove, ...replace.flatMap((m) => (m.name === undefined ? [] : [m.name]))]);
      const built = buildMappingsAgainst(index, parsed, replacing, (i) => (i < add.length ? `add[${i}]` : `replace[${i - add.length}]`));
      // Replaced mappings keep their place; removed ones go; new ones go last (the order
      // applyEdits rebuilds from a generation's edits, src/engine/state.ts).
      const byName = new Map(built.map((m, i) => [m.name, { mapping: m, config: parsed[i]! }]));
      const baseMappings = index.model.mappings;
      const { mappings: baseConfigs = [], ...head } = base;
      // Positions of the named mappings: for a few, the index's own object found by identity
      // (lastIndexOf: a native scan from the end, where this API appends; a findIndex comparing
      // names cost ~2 ms at 50,000); one pass for many.
      const named = [...new Set([...remove, ...byName.keys()])].filter((name) => index.has(name));
      const positions = new Map<string, number>();
      if (named.length <= 16) for (const name of named) positions.set(name, baseMappings.lastIndexOf(index.get(name)!));
      else {
        const wanted = new Set(named);
        baseMappings.forEach((m, i) => wanted.has(m.name) && positions.set(m.name, i));
      }
      const mappings = baseMappings.slice();
      const configs = baseConfigs.slice();
      const edits: MappingEdits = { head, removed: [], replaced: [], appended: [] };
      const changes: Change[] = [];
      // Every replaced mapping leaves and re-enters the index (a new object); only real changes reach the plan.
      const left: Mapping[] = [];
      const entered: Mapping[] = [];
      for (const [name, i] of positions) {
        const mapping = baseMappings[i]!;
        const replacement = byName.get(name);
        byName.delete(name);
        left.push(mapping);
        if (replacement) {
          mappings[i] = replacement.mapping;
          configs[i] = replacement.config;
          edits.replaced.push([i, replacement.config]);
          entered.push(replacement.mapping);
          if (!sameMapping(mapping, replacement.mapping)) changes.push({ op: 'change', kind: 'mapping', name, before: mapping, after: replacement.mapping });
        } else {
          edits.removed.push(i);
          changes.push({ op: 'remove', kind: 'mapping', name, before: mapping });
        }
      }
      // Removed last, from the end, so that the positions above stay right.
      for (const i of [...edits.removed].sort((x, y) => y - x)) {
        mappings.splice(i, 1);
        configs.splice(i, 1);
      }
      for (const { mapping, config } of byName.values()) {
        mappings.push(mapping);
        configs.push(config);
        edits.appended.push(config);
        entered.push(mapping);
        changes.push({ op: 'add', kind: 'mapping', name: mapping.name, after: mapping });
      }
      const config: Config = { ...base, mappings: configs };
      const model: Model = { ...index.model, mappings };
      const touched = changes.filter((c) => c.op !== 'remove').length;
      const plan: Plan = { changes, unchanged: countObjects(model) - touched };
      const known: KnownChange = { plan, edits, index: (next) => index.evolve(next, left, entered) };
      // A config made of edits is hashed from its parent's hash and the edits: the cost of the change.
      const hash = last.generation?.kind === 'apply' ? editsHash(this.backend.name, last.generation.hash, edits) : configHash(this.backend.name, config);
      return this.applyLocked(config, () => model, hash, options, last, known);
    });
  }

  /** Adds mappings by name (refused when a name is already applied). */
  addMappings(mappings: MappingConfig[], options?: Omit<ApplyOptions, 'dryRun'>): Promise<ApplyResult> {
    return this.changeMappings({ add: mappings }, options);
  }

  /** Replaces mappings by name (adds those not applied yet). */
  replaceMappings(mappings: MappingConfig[], options?: Omit<ApplyOptions, 'dryRun'>): Promise<ApplyResult> {
    return this.changeMappings({ replace: mappings }, options);
  }

  /** Removes mappings by name (refused when a name is not applied). */
  removeMappings(names: string[], options?: Omit<ApplyOptions, 'dryRun'>): Promise<ApplyResult> {
    return this.changeMappings({ remove: names }, options);
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
      await Promise.all([this.backend.sweep?.(), this.state.sweepTemp()]);
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
  private async hostEffects(before: Model | undefined, after: Model, changes?: MappingChanges): Promise<string[]> {
    if (this.backend.touchesHost === false) return [];
    // With the changes known, the host part costs the change (src/host/effects.ts; the same model twice: none).
    return hostEffects(this.runner, before, after, { stateDir: this.state.dir, ...(changes ? { changes } : {}) });
  }

  private progress(phase: string): void {
    this.options.onProgress?.(phase);
  }

  /** Whether this cheap apply is the Nth one since the last full check (fullCheckEvery). */
  private fullCheckDue(): boolean {
    const every = this.options.fullCheckEvery ?? defaultFullCheckEvery;
    if (every <= 0) return false;
    this.cheapApplies++;
    return this.cheapApplies >= every;
  }

  /**
   * The engine flow of docs/operations.md ("How an apply reaches the kernel"): a no-op without
   * any listing when the kernel holds the last generation and the config is the same; a delta
   * when the backend can render one; the full path otherwise (first apply, drift, another
   * backend, no capability) and when a delta is refused.
   */
  private async applyLocked(config: Config, modelOf: () => Model, hash: string, options: ApplyOptions, preread?: LastApplied, known?: KnownChange): Promise<ApplyResult> {
    const last = preread ?? (await this.last());
    const stamp = hash.slice(0, 16);
    const backend = this.backend;
    const previous = last.apply?.backend === backend.name ? last.apply : undefined;
    let knownDrift: boolean | undefined;
    if (previous && backend.holds) {
      // The agent API, from the generation this process wrote or read: the delta's own marker
      // swap is the check (a kernel without the last generation's marker refuses the whole
      // batch, and applyDelta then looks), so no lookup before it (docs/operations.md).
      const assumed = known !== undefined && !options.verifyFull && this.cache?.generation === previous && Boolean(backend.renderDelta && backend.loadDelta && backend.verifyDelta);
      if (!assumed) this.progress('checking that the kernel holds the last generation');
      let held = assumed || (await backend.holds(previous.stamp));
      if (held && options.verifyFull) {
        this.cheapApplies = 0;
        this.progress('full check: comparing the whole live ruleset with the last generation');
        const live = await backend.read().catch(() => undefined);
        held = live !== undefined && !this.drift(last, live).drifted;
      } else if (held && this.fullCheckDue()) {
        // The periodic check: status's comparison (docs/operations.md, "status"), which a
        // backend reads its cheapest way; the whole listing only without that capability.
        this.cheapApplies = 0;
        this.progress('periodic check: comparing the live ruleset with the last generation as status does');
        held = await this.statusDrift(last, { counters: false }).then((read) => read.active && !read.drift.drifted, () => false);
      }
      knownDrift = !held;
      if (held && previous.hash === hash) {
        // Already in place: nothing is sent (handles and counters stay); host settings are re-asserted.
        // Equal hashes, equal configs: the model in memory, else the one of the config given
        // (already parsed; building the generation's would parse its config again), kept for the next call.
        const cached = this.cache?.generation === previous ? this.cache.model : undefined;
        const model = cached ?? modelOf();
        if (this.cache?.generation === previous && this.cache.model === null) this.cache.model = model;
        const warnings = await this.hostEffects(model, model);
        return withRuleset({ kind: 'noop', changed: false, dryRun: false, plan: { changes: [], unchanged: countObjects(model) }, generation: previous, warnings: [...last.warnings, ...warnings], repairedDrift: false }, () => backend.render(model, { stamp }));
      }
      const lastModel = held ? last.model() : undefined;
      if (lastModel && backend.renderDelta && backend.loadDelta && backend.verifyDelta) {
        const model = modelOf();
        const delta = backend.renderDelta(lastModel, model, { from: previous.stamp, to: stamp }, known ? mappingChangesOf(known.plan) : undefined);
        if (delta && !known && !delta.summary.added.length && !delta.summary.removed.length && !delta.summary.changed.length) {
          // The same ruleset under another hash (a config the agent API made, applied whole):
          // nothing to send, nothing to record.
          const warnings = await this.hostEffects(lastModel, lastModel);
          return withRuleset({ kind: 'noop', changed: false, dryRun: false, plan: { changes: [], unchanged: countObjects(model) }, generation: previous, warnings: [...last.warnings, ...warnings], repairedDrift: false }, () => backend.render(lastModel, { stamp: previous.stamp }));
        }
        if (delta) {
          const result = await this.applyDelta(config, model, lastModel, delta, { hash, stamp, from: previous.stamp }, last, known, assumed);
          if (!('refused' in result)) return result;
          knownDrift = result.drifted;
        } else if (assumed && held) knownDrift = !(await backend.holds(previous.stamp));
      } else if (assumed && held) knownDrift = !(await backend.holds(previous.stamp));
    }
    return this.applyFull(config, modelOf(), hash, stamp, last, knownDrift, known);
  }

  /**
   * Sends only the difference. Refused: `refused`, with whether the kernel had drifted from the
   * last generation (nothing changed; the caller takes the full path). Loaded but not verified: undone (inverse delta, else a full load of the previous
   * generation), then ApplyError; RollbackError (exit 5) only when neither restores it.
   */
  private async applyDelta(config: Config, model: Model, lastModel: Model, delta: Delta, stamps: { hash: string; stamp: string; from: string }, last: LastApplied, known: KnownChange | undefined, assumed = false): Promise<ApplyResult | { refused: true; drifted: boolean }> {
    const backend = this.backend as Required<Pick<Backend, 'renderDelta' | 'loadDelta' | 'verifyDelta'>> & Backend;
    const { added, removed, changed } = delta.summary;
    this.progress(`loading a delta (+${added.length} -${removed.length} ~${changed.length} mapping(s)) in one atomic batch`);
    try {
      await backend.loadDelta(delta);
    } catch (error) {
      // A refused batch changed nothing: the full path (snapshot, load, verify, restore) takes
      // over. Not believed, read back: a tool that reports failure after committing (or a
      // kernel state nobody knows) is undone like a delta that does not verify.
      const untouched = await backend.holds!(stamps.from).catch(() => false);
      if (untouched) {
        this.progress(`delta refused (${(error as Error).message.split('\n')[0]}): falling back to a full load`);
        return { refused: true, drifted: false };
      }
      // Sent without a marker check first: a kernel holding neither marker had drifted (another
      // writer, a flush) and refused the batch for it; the full path repairs it.
      if (assumed && !(await backend.holds!(stamps.stamp).catch(() => true))) {
        this.progress('the kernel no longer holds the last generation: a full load repairs it');
        return { refused: true, drifted: true };
      }
      this.progress('the delta reported failure but the kernel no longer holds the previous generation: undoing it');
      const how = await this.undoDelta(model, lastModel, stamps, error);
      throw new ApplyError(`apply failed: ${(error as Error).message}\nthe previous ruleset was restored and verified (${how})`, true, { cause: error });
    }
    this.progress('reading back what the delta touched');
    let problems: string[];
    try {
      problems = await backend.verifyDelta(delta);
    } catch (error) {
      problems = [`reading the delta back failed: ${(error as Error).message}`];
    }
    if (problems.length) {
      this.progress('delta verification failed: undoing it');
      const how = await this.undoDelta(model, lastModel, stamps, new Error(problems.join('; ')));
      throw new ApplyError(`apply failed verification: ${problems.slice(0, 5).join('; ')}\nthe previous ruleset was restored and verified (${how})`, true);
    }
    // The generation (fsyncs in libuv's thread pool) and the host settings (netlink sockets,
    // /proc/sys) side by side. A generation that cannot be written still undoes the delta, and
    // the host settings then follow the ruleset put back (docs/operations.md).
    this.progress('recording the generation; host settings (hairpin, route_localnet, stale UDP flows)');
    const plan = known?.plan ?? diffModels(lastModel, model);
    const changes = mappingChangesOf(plan);
    const [recorded, host] = await Promise.allSettled([
      this.record({ backend: backend.name, hash: stamps.hash, stamp: stamps.stamp, kind: 'apply', config }, last, known),
      this.hostEffects(lastModel, model, changes),
    ]);
    if (recorded.status === 'rejected') {
      const error: unknown = recorded.reason;
      this.progress('recording failed: undoing the delta');
      const how = await this.undoDelta(model, lastModel, stamps, error);
      this.progress('host settings of the restored ruleset');
      await this.hostEffects(model, lastModel, { added: changes.removed, removed: changes.added }).catch(() => undefined);
      throw new ApplyError(`apply failed: the generation could not be recorded in ${this.state.dir} (${(error as Error).message})\nthe previous ruleset was restored and verified (${how}); free space in the state dir and apply again`, true, { cause: error });
    }
    const generation = recorded.value;
    await this.remember(generation, model, known?.index(model));
    if (host.status === 'rejected') throw host.reason;
    const warnings = host.value;
    return withRuleset({ kind: 'delta', changed: true, dryRun: false, plan, delta, generation, warnings: [...last.warnings, ...warnings], repairedDrift: false }, () => backend.render(model, { stamp: stamps.stamp }));
  }

  /**
   * Puts the previous generation back after a delta that loaded: the inverse delta, verified;
   * else a full load of the previous generation's render, read back and verified. Says how.
   */
  private async undoDelta(model: Model, lastModel: Model, stamps: { stamp: string; from: string }, cause: unknown): Promise<string> {
    const backend = this.backend as Required<Pick<Backend, 'renderDelta' | 'loadDelta' | 'verifyDelta'>> & Backend;
    const failures: string[] = [];
    // A command that reports failure may still have committed: only the read-back decides.
    const attempt = async (what: string, load: () => Promise<void>, check: () => Promise<string[]>): Promise<boolean> => {
      let loadError: unknown;
      try {
        await load();
      } catch (error) {
        loadError = error;
      }
      try {
        const problems = await check();
        if (!problems.length) return true;
        failures.push(`${what} ${loadError ? `failed (${(loadError as Error).message})` : `did not verify (${problems.slice(0, 3).join('; ')})`}`);
      } catch (error) {
        failures.push(`reading ${what} back failed: ${(error as Error).message}`);
      }
      return false;
    };
    const inverse = backend.renderDelta(model, lastModel, { from: stamps.stamp, to: stamps.from });
    if (!inverse) failures.push('the change has no inverse delta');
    else if (await attempt('the inverse delta', () => backend.loadDelta(inverse), () => backend.verifyDelta(inverse))) return 'by the inverse delta';
    this.progress('undoing the delta failed: loading the previous generation whole');
    const previous = backend.render(lastModel, { stamp: stamps.from });
    if (await attempt('the reloaded ruleset', () => backend.load(previous), async () => backend.verify(previous, await backend.read()))) return 'by a full reload of the previous generation';
    throw new RollbackError(
      `apply failed (${(cause as Error).message}) and restoring the previous ruleset failed too (${failures.join('; ')}).\n` +
        `natctl's table may be partly configured. ${backend.recoveryHint?.() ?? 'Inspect the ruleset'}; then run: natctl rollback (or natctl flush)`,
      { cause },
    );
  }

  /** Records a generation: as edits against the last one when the agent API made the config (small at any N). */
  private record(entry: Omit<Generation, 'generation' | 'time'>, last: LastApplied, known: KnownChange | undefined): Promise<Generation> {
    const parent = last.generation;
    // Under the lock, after locked() checked the directories and last() listed the numbers.
    return this.state.record(entry, known && parent?.kind === 'apply' ? { parent, edits: known.edits } : undefined, { ensured: true, numbers: last.numbers });
  }

  /** The full path: snapshot, load the whole ruleset, read back, verify, record, or restore the snapshot. */
  private async applyFull(config: Config, model: Model, hash: string, stamp: string, last: LastApplied, knownDrift: boolean | undefined, known?: KnownChange): Promise<ApplyResult> {
    const lastModel = last.model();
    const plan = known?.plan ?? diffModels(lastModel, model);
    const ruleset = this.backend.render(model, { stamp });
    this.progress('reading the live ruleset');
    const before = await this.backend.read();
    // A backend switch: the last generation's backend keeps its rules until this one is verified.
    let switching = last.generation?.kind === 'apply' && last.generation.backend !== this.backend.name ? createBackend(last.generation.backend, { ...this.options.backendOptions, runner: this.runner, stateDir: this.state.dir }) : undefined;
    if (switching && !(await switching.version().then(() => true, () => false))) {
      last.warnings.push(`the last generation was applied with ${switching.name}, which no longer works here: its rules (if any are left) were not removed`);
      switching = undefined;
    }
    // A backend that cannot tell cheaply whether the kernel holds the last generation compares the listing.
    const drifted = switching ? false : knownDrift ?? (last.generation ? this.drift(last, before).drifted : false);
    const previous = last.apply?.backend === this.backend.name ? last.apply : undefined;
    if (knownDrift === undefined && previous && previous.hash === hash && before && !drifted) {
      // Already in place: do not rewrite the kernel's table (handles and counters stay).
      const warnings = await this.hostEffects(model, model);
      return { kind: 'noop', changed: false, dryRun: false, plan, ruleset, generation: previous, warnings: [...last.warnings, ...warnings], repairedDrift: false };
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
    // The listing is kept only while small: status then shows drift line by line (docs/operations.md).
    // A normalized listing is never under a quarter of the listing's text: a big one is not normalized at all (docs/performance.md).
    let listing: string | undefined;
    try {
      listing = !after ? '' : !(after.rawLongerThan?.(4 * maxKeptListing) ?? after.raw.length > 4 * maxKeptListing) ? after.normalized : undefined;
    } catch {
      listing = undefined; // not kept: status compares with the render instead
    }
    after = null; // a big read-back is the biggest object of the apply: not kept to its end
    if (switching) await this.switchFrom(switching, before);

    // Recorded before the host settings: a generation that cannot be written (ENOSPC, EIO)
    // puts the previous ruleset back, so the kernel never runs a ruleset history lacks.
    this.progress('recording the generation');
    let generation: Generation;
    try {
      const entry: Omit<Generation, 'generation' | 'time'> = { backend: this.backend.name, hash, stamp, kind: 'apply', config };
      if (listing !== undefined && listing.length <= maxKeptListing) entry.live = listing;
      generation = await this.record(entry, last, known);
    } catch (error) {
      this.progress('recording failed: restoring the previous ruleset');
      await this.restoreOrDie(before, error);
      throw new ApplyError(`apply failed: the generation could not be recorded in ${this.state.dir} (${(error as Error).message})\nthe previous ruleset was restored and verified; free space in the state dir and apply again`, true, { cause: error });
    }
    await this.remember(generation, model, known?.index(model));
    this.progress('host settings (hairpin, route_localnet, stale UDP flows)');
    const warnings = await this.hostEffects(lastModel, model, mappingChangesOf(plan));
    return { kind: 'full', changed: true, dryRun: false, plan, ruleset, generation, warnings: [...last.warnings, ...warnings], repairedDrift: Boolean(last.generation?.kind === 'apply' && drifted) };
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

  /**
   * What status reads of the kernel and how it differs from the last generation: the backend's
   * cheapest reading (readStatus) when the generation kept no listing, else the whole live state
   * compared line by line (small rulesets) or verified against the render.
   */
  private async statusDrift(last: LastApplied, options: { counters?: boolean } = {}): Promise<{ active: boolean; counters: MappingCounters[]; blocked: LiveState['blocked']; drift: Drift }> {
    const { generation } = last;
    const readStatus = this.backend.readStatus?.bind(this.backend);
    if (readStatus && generation?.kind === 'apply' && generation.live === undefined) {
      let unreadable = false;
      const read = await readStatus(() => {
        const model = last.model();
        if (!model) unreadable = true;
        return { model: model ?? emptyModel(), ...(generation.stamp !== undefined ? { stamp: generation.stamp } : {}) };
      }, options);
      const drift = unreadable
        ? { drifted: read.active, missing: [], extra: read.active ? ['natctl holds a ruleset, but the last generation cannot be read'] : [] }
        : { drifted: read.problems.length > 0, missing: read.problems, extra: [] };
      return { active: read.active, counters: read.counters, blocked: read.blocked, drift };
    }
    const live = await this.backend.read();
    return { active: live !== null, counters: live?.counters ?? [], blocked: live?.blocked ?? [], drift: this.drift(last, live) };
  }

  /**
   * Counters and drift. When the last generation kept its listing (small rulesets, or none
   * applied) the whole live state is read and compared line by line; otherwise the backend
   * reads what status needs its cheapest way (readStatus) and compares it with the render of
   * the last generation's config (docs/operations.md).
   */
  async status(): Promise<StatusReport> {
    this.needRoot('status');
    const last = await this.last();
    const { generation } = last;
    const reading = await this.statusDrift(last);
    const { drift } = reading;
    const model = last.model();
    const counters = new Map(reading.counters.map((c) => [c.name, c]));
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
    const report: StatusReport = { backend: this.backend.name, active: reading.active, mappings, blocked: reading.blocked, drift };
    if (this.runner.netns) report.netns = this.runner.netns;
    if (generation) report.generation = { number: generation.generation, time: generation.time, hash: generation.hash };
    return report;
  }

  async flush(): Promise<void> {
    this.needRoot('flush');
    await this.locked(async () => {
      const lastModel = (await this.last()).model();
      await this.backend.flush();
      await this.hostEffects(lastModel, emptyModel());
      await this.state.record({ backend: this.backend.name, hash: sha256(''), kind: 'flush', config: { version: 1 } });
    });
  }

  /** Host checks; against `config` when given, else the last applied config. */
  async doctor(config?: Config): Promise<CheckResult[]> {
    const model = config ? buildModel(config) : await this.last().then((last) => last.model()).catch(() => undefined);
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
      const plan = diffModels((await this.last()).model(), emptyModel());
      await this.flush();
      return { kind: 'full', changed: true, dryRun: false, plan, ruleset: { backend: this.backend.name, text: '' }, warnings: [], repairedDrift: false };
    }
    // With `auto`, a generation goes back to the backend that applied it (a switch, in one apply).
    if ((this.options.backend ?? 'auto') === 'auto' && generation.backend !== this.backend.name) {
      return (await Controller.open({ ...this.options, backend: generation.backend })).apply(parseConfigObject(generation.config));
    }
    return this.apply(parseConfigObject(generation.config));
  }
}

