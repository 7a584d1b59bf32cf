// One sync of the node agent (docs/operations.md, "natctl watch"): read the desired state
// (a file or a drop-in directory), apply it through the engine (which takes the state lock,
// diffs, loads atomically, verifies, and repairs drift), and describe what happened. A broken
// desired state is never applied: the last good state stays in the kernel, and drift from it
// is still repaired.
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { buildModel } from '../model/build.js';
import type { ApplyResult, Controller } from '../engine/controller.js';
import type { Change } from '../engine/plan.js';
import { ApplyError, ConfigError, EnvironmentError, LockError, NatctlError, RollbackError, UsageError } from '../errors.js';

/**
 * How an apply changed the kernel. The engine replaces natctl's table whole today (`full`) or
 * leaves it alone (`noop`); an engine that applies deltas reports `kind` itself and it is
 * passed through unchanged (see syncKind).
 */
export const syncKinds = ['full', 'delta', 'noop'] as const;
export type SyncKind = (typeof syncKinds)[number];

/** What started a sync. */
export const syncTriggers = ['start', 'change', 'resync', 'signal', 'retry'] as const;
export type SyncTrigger = (typeof syncTriggers)[number];

/** Why a sync failed: the error classes of src/errors.ts, once. */
export const failureReasons = ['config', 'lock', 'apply', 'rollback', 'environment', 'internal'] as const;
export type FailureReason = (typeof failureReasons)[number];

export interface ChangeSummary {
  op: Change['op'];
  kind: Change['kind'];
  name: string;
}

/** At most this many changes are listed in one log line; the counts are always complete. */
export const maxListedChanges = 50;

interface OutcomeBase {
  trigger: SyncTrigger;
  /** Wall time of the whole sync: reading the config, waiting for the lock, applying. */
  durationMs: number;
  /** The kernel differed from the last apply and was rewritten. */
  driftRepaired: boolean;
}

export interface SyncSuccess extends OutcomeBase {
  ok: true;
  kind: SyncKind;
  mappings: number;
  added: number;
  removed: number;
  changed: number;
  changes: ChangeSummary[];
  generation: number | undefined;
  warnings: string[];
}

export interface SyncFailure extends OutcomeBase {
  ok: false;
  reason: FailureReason;
  error: string;
}

export type SyncOutcome = SyncSuccess | SyncFailure;

/** The engine's kind when it reports one; else `noop` for an unchanged kernel, `full` otherwise. */
export function syncKind(result: ApplyResult & { kind?: SyncKind }): SyncKind {
  if (result.kind !== undefined) return result.kind;
  return result.changed ? 'full' : 'noop';
}

export function failureReason(error: unknown): FailureReason {
  if (error instanceof ConfigError || error instanceof UsageError) return 'config';
  if (error instanceof LockError) return 'lock';
  if (error instanceof RollbackError) return 'rollback';
  if (error instanceof ApplyError) return 'apply';
  if (error instanceof EnvironmentError) return 'environment';
  return 'internal';
}

function describe(error: unknown): string {
  if (error instanceof NatctlError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

export interface ReconcilerOptions {
  controller: Controller;
  /** A config file or a drop-in directory. */
  path: string;
  /** Called when a broken desired state is found (the sync fails with reason `config`). */
  onConfigError?: (message: string) => void;
  /** Called when the last good config was re-applied to repair drift while the desired state is broken. */
  onRepairWithLastGood?: (result: ApplyResult) => void;
}

export class Reconciler {
  /** The last config that applied successfully: what the kernel should hold while PATH is broken. */
  private lastGood: Config | undefined;

  constructor(private readonly options: ReconcilerOptions) {}

  async sync(trigger: SyncTrigger): Promise<SyncOutcome> {
    const started = performance.now();
    const elapsed = (): number => Math.round((performance.now() - started) * 10) / 10;
    let config: Config;
    try {
      config = await loadConfigFile(this.options.path);
      buildModel(config); // cross-field problems (conflicts, unknown networks) are bad input too
    } catch (error) {
      const message = describe(error);
      this.options.onConfigError?.(message);
      let driftRepaired = false;
      if (this.lastGood) {
        // Bad input never reaches the kernel, but the last good state is still defended against drift.
        try {
          const repair = await this.options.controller.apply(this.lastGood);
          driftRepaired = repair.repairedDrift;
          if (repair.changed) this.options.onRepairWithLastGood?.(repair);
        } catch (repairError) {
          return { ok: false, trigger, reason: failureReason(repairError), error: `${message}\nre-applying the last good config failed too: ${describe(repairError)}`, durationMs: elapsed(), driftRepaired };
        }
      }
      return { ok: false, trigger, reason: failureReason(error), error: message, durationMs: elapsed(), driftRepaired };
    }
    try {
      const result = await this.options.controller.apply(config);
      this.lastGood = config;
      const count = (op: Change['op']): number => result.plan.changes.filter((c) => c.op === op).length;
      return {
        ok: true,
        trigger,
        kind: syncKind(result),
        durationMs: elapsed(),
        driftRepaired: result.repairedDrift,
        mappings: config.mappings?.length ?? 0,
        added: count('add'),
        removed: count('remove'),
        changed: count('change'),
        changes: result.plan.changes.slice(0, maxListedChanges).map(({ op, kind, name }) => ({ op, kind, name })),
        generation: result.generation?.generation,
        warnings: result.warnings,
      };
    } catch (error) {
      return { ok: false, trigger, reason: failureReason(error), error: describe(error), durationMs: elapsed(), driftRepaired: false };
    }
  }
}
