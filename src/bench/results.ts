// What one bench run produces: the shape of bench-results/*.json and the input of the
// report and the target evaluation. Pure types and small helpers.
import type { AddonStatus, Transport } from './options.js';

export type Operation = 'raw-render' | 'raw-reference' | 'cold' | 'unchanged' | 'add' | 'remove' | 'status';
/** How the operation was driven: the natctl CLI, the library in a running process, or nft itself. */
export type Via = 'cli' | 'library' | 'nft';

export type Outcome =
  | { kind: 'ok'; samplesMs: number[]; medianMs: number; peakRssKiB?: number }
  /** peakRssKiB: for the CLI, its peak resident set when it was killed (a lower bound). */
  | { kind: 'timeout'; limitMs: number; peakRssKiB?: number }
  | { kind: 'skipped'; reason: string }
  | { kind: 'error'; message: string };

export interface Measurement {
  op: Operation;
  via: Via;
  /** null for raw nft loads (always the nft binary). */
  transport: Transport | null;
  n: number;
  outcome: Outcome;
}

export interface StateDirSize {
  transport: Transport;
  n: number;
  /** Bytes in the CLI's state dir after its 5th apply, or why there is no number. */
  bytes?: number;
  note?: string;
}

export type RulesetKind = 'none' | 'natctl' | 'reference';

export interface DataPlanePoint {
  ruleset: RulesetKind;
  n: number;
  /** Connections per second of each round (undefined where the round failed). */
  rates: number[];
  /** Each round's rate divided by the mean of the no-NAT rounds measured right before and after it. */
  ratios: number[];
  /** Each round's extra CPU time per connection over no NAT, in microseconds (1/rate - 1/no-NAT rate). */
  extraUs: number[];
  medianRate?: number;
  medianRatio?: number;
  medianExtraUs?: number;
  /** How long setting the ruleset up took (natctl: a CLI cold apply into the Sandbox's host). */
  setupMs?: number;
  /** Why the point has no numbers (setup failed, not DNATing, ...). */
  note?: string;
}

export interface DataPlaneResult {
  client: string;
  cpu: number;
  rounds: number;
  secondsPerPoint: number;
  points: DataPlanePoint[];
  note?: string;
}

export interface Machine {
  cpuModel: string;
  cores: number;
  kernel: string;
  nft: string;
  node: string;
  python: string;
  natctl: string;
  commit: string;
  date: string;
  addon: AddonStatus;
}

export interface BenchResults {
  machine: Machine;
  settings: { sizes: number[]; rounds: number; quick: boolean; opTimeoutMs: number; budgetMs: number; transports: Transport[] };
  measurements: Measurement[];
  stateDir: StateDirSize[];
  dataPlane?: DataPlaneResult;
  durationS: number;
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function findMeasurement(results: Pick<BenchResults, 'measurements'>, op: Operation, via: Via, transport: Transport | null, n: number): Measurement | undefined {
  return results.measurements.find((m) => m.op === op && m.via === via && m.transport === transport && m.n === n);
}
