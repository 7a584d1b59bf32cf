// What every backend does, so the engine (plan/apply/rollback) never knows which one it
// drives: render a model, load it atomically, read the live state back.
import type { CheckResult } from '../doctor/checks.js';
import type { MappingChanges } from '../model/diff.js';
import type { Family, Model } from '../model/model.js';

export type BackendName = 'nft' | 'iptables-legacy' | 'fake';

/** One separately committed part of a ruleset (iptables: one table of one family). */
export interface RulesetPayload {
  family: Family;
  table: string;
  /** Exactly what goes to the kernel tool for this part. */
  text: string;
}

/**
 * A ruleset as a backend loads it: `text` is exactly what goes to the kernel tool (the nft
 * batch), or, for a backend that commits in several parts (`payloads`), all of them joined
 * in a displayable form; `text` is what is hashed and recorded either way.
 */
export interface Ruleset {
  backend: BackendName;
  text: string;
  payloads?: RulesetPayload[];
}

/** Live counters of one mapping. */
export interface MappingCounters {
  name: string;
  /** What the kernel's ruleset says about the mapping (proto, host side). */
  description: string;
  /** New connections DNATed (the nat chain sees only a connection's first packet). */
  connections: number;
  /** Forwarded packets and bytes of those connections, both directions. */
  packets: number;
  bytes: number;
}

export interface LiveState {
  /** Restorable as-is by `restore`. */
  raw: string;
  /**
   * Whether `raw` is longer than `length`, for a state whose `raw` is built only when read (a
   * big table read in parts): answered without building it. Absent: look at `raw`.
   */
  rawLongerThan?(length: number): boolean;
  /** Stable text for comparisons: no handles, counters zeroed. */
  normalized: string;
  counters: MappingCounters[];
  blocked: { name: string; packets: number; bytes: number }[];
}

/** What the kernel should hold for `status`: the last generation's model and the stamp it was loaded with. */
export interface StatusExpectation {
  model: Model;
  stamp?: string;
}

/** counters false: only the comparison is wanted (the engine's periodic check); the counters may come back empty. */
export interface StatusReadOptions {
  counters?: boolean;
}

/** What `status` shows of the kernel: the counters, and how it differs from the last generation. */
export interface StatusReading {
  /** The kernel holds a natctl ruleset. */
  active: boolean;
  counters: MappingCounters[];
  blocked: LiveState['blocked'];
  /** Differences between the kernel and the expectation, in verify's wording; empty when they agree. */
  problems: string[];
}

/** An incremental change: one atomic batch holding only the difference between two models. */
export interface Delta {
  backend: BackendName;
  /** Exactly what goes to the kernel tool (displayable; for logs and `--verbose`). */
  text: string;
  /** Mappings added, removed and changed by this delta (names), for logs and metrics. */
  summary: { added: string[]; removed: string[]; changed: string[] };
}

export interface Backend {
  readonly name: BackendName;
  /**
   * Capability: false for a backend without a kernel behind it (the fake one, for tests). The
   * engine then needs no root and applies no host settings (hairpin, route_localnet, conntrack).
   * Absent means true.
   */
  readonly touchesHost?: boolean;
  render(model: Model, options?: { stamp?: string }): Ruleset;
  /** Checks a ruleset against the kernel without committing anything. */
  check(ruleset: Ruleset): Promise<void>;
  /** Atomically replaces natctl's ruleset; all or nothing. */
  load(ruleset: Ruleset): Promise<void>;
  /** natctl's live ruleset, or null when the kernel holds none. */
  read(): Promise<LiveState | null>;
  /**
   * Capability: what `status` needs, read as cheaply as the backend can (docs/operations.md):
   * the counters and the comparison with the last generation, which `expected` gives (called
   * once, when the backend is ready for it: while its own reads run elsewhere, or after a big
   * listing's memory went). The engine's periodic check uses it too, without the counters.
   * Absent: the engine reads the whole state (`read`) and verifies it.
   */
  readStatus?(expected: () => StatusExpectation, options?: StatusReadOptions): Promise<StatusReading>;
  /** Problems found comparing what the kernel holds with what `ruleset` declares; empty when they agree. */
  verify(ruleset: Ruleset, live: LiveState | null): string[];
  /**
   * Problems that would keep `restore(live)` from putting `live` back (objects the backend
   * cannot recreate); checked before an apply changes anything. Empty or absent: restorable.
   */
  restorable?(live: LiveState | null): Promise<string[]>;
  /** What an operator should run to inspect natctl's rules when a restore failed (e.g. a listing command). */
  recoveryHint?(): string;
  /** Atomically puts back a state returned by `read` (null: none). */
  restore(live: LiveState | null): Promise<void>;
  /** Removes everything natctl owns in the kernel and nothing else. */
  flush(): Promise<void>;
  /** Removes scratch files a killed apply left behind; the engine calls it under the apply lock. */
  sweep?(): Promise<number>;
  /** The backend's own host checks for `natctl doctor` (model: the config to check against). */
  doctor?(model?: Model): Promise<CheckResult[]>;
  /** One line saying how rulesets reach the kernel (tool, transport, namespace), for `--verbose`. */
  describe?(): string;
  /** Tool name and version, for status and doctor. */
  version(): Promise<string>;
  /**
   * Capability: does the kernel still hold the ruleset last loaded with this `stamp`
   * (render(model, { stamp }) or a delta to `stamp`)? Answers without listing the whole ruleset
   * (e.g. a marker object named after the stamp). false: drift or no ruleset.
   */
  holds?(stamp: string): Promise<boolean>;
  /**
   * Capability: the batch that turns the kernel from `before` (which it holds, stamped
   * `stamp.from`) into `after`, re-stamped `stamp.to`; undefined when this change needs a full
   * load (e.g. networks, snat or block rules changed). `changes`, when the caller knows them
   * (the agent API), are exactly the mappings that differ: no comparison of the whole models.
   */
  renderDelta?(before: Model, after: Model, stamp: { from: string; to: string }, changes?: MappingChanges): Delta | undefined;
  /** Atomically applies a delta: all or nothing. Throws (a BackendFailure) when refused: nothing changed. */
  loadDelta?(delta: Delta): Promise<void>;
  /** Reads back only what `delta` touched (and the stamp); problems found, empty when the kernel holds it. */
  verifyDelta?(delta: Delta): Promise<string[]>;
}

/** readStatus for a backend whose whole state is cheap to read: `read`, then `verify` of the expectation's render. */
export async function readStatusByListing(backend: Backend, expected: () => StatusExpectation): Promise<StatusReading> {
  const live = await backend.read();
  const { model, stamp } = expected();
  const problems = backend.verify(backend.render(model, stamp === undefined ? {} : { stamp }), live);
  return { active: live !== null, counters: live?.counters ?? [], blocked: live?.blocked ?? [], problems };
}
