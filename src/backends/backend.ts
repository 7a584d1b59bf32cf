// What every backend does, so the engine (plan/apply/rollback) never knows which one it
// drives: render a model, load it atomically, read the live state back.
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
  /** Stable text for comparisons: no handles, counters zeroed. */
  normalized: string;
  counters: MappingCounters[];
  blocked: { name: string; packets: number; bytes: number }[];
}

export interface Backend {
  readonly name: BackendName;
  render(model: Model): Ruleset;
  /** Checks a ruleset against the kernel without committing anything. */
  check(ruleset: Ruleset): Promise<void>;
  /** Atomically replaces natctl's ruleset; all or nothing. */
  load(ruleset: Ruleset): Promise<void>;
  /** natctl's live ruleset, or null when the kernel holds none. */
  read(): Promise<LiveState | null>;
  /** Problems found comparing what the kernel holds with what `ruleset` declares; empty when they agree. */
  verify(ruleset: Ruleset, live: LiveState | null): string[];
  /** Atomically puts back a state returned by `read` (null: none). */
  restore(live: LiveState | null): Promise<void>;
  /** Removes everything natctl owns in the kernel and nothing else. */
  flush(): Promise<void>;
  /** Tool name and version, for status and doctor. */
  version(): Promise<string>;
}
