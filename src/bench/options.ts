// The bench's knobs, all from the environment (npm run bench takes no arguments):
//   NATCTL_BENCH_SIZES=1,100,...   mapping counts (default 1,10,100,1000,10000,50000)
//   NATCTL_BENCH_ROUNDS=N          repeats of each control-plane operation (median reported; default 3)
//   NATCTL_BENCH_QUICK=1           N = 1, 100, 1000, one round, 3 data-plane rounds; docs untouched
//   NATCTL_BENCH_TIMEOUT_S=S       per-operation limit; an operation over it is killed and marked "timed out"
//   NATCTL_BENCH_BUDGET_S=S        limit for the whole control-plane part; what is left is marked "skipped"
//   NATCTL_BENCH_DP_ROUNDS/_DP_SECONDS/_DP_MAX  data-plane rounds (0: no data plane), seconds and
//                                  connections per point
//   NATCTL_BENCH_DOCS=0|1          rewrite docs/performance.md (default: yes unless quick)
//   NATCTL_BENCH_FROM=FILE         measure nothing: print and write the docs from an earlier run's JSON
//   NATCTL_NATIVE=0|1              transport: 0 spawned nft only, 1 the addon only; unset: both when the addon loads
// Pure: parsed from an env object so the unit test can drive it.
import { firstPort } from './configs.js';

export type Transport = 'spawned' | 'addon';

export interface AddonStatus {
  loaded: boolean;
  reason: string;
}

export interface BenchOptions {
  sizes: number[];
  rounds: number;
  quick: boolean;
  opTimeoutMs: number;
  budgetMs: number;
  /** Transports the CLI and library are measured with, the default one (what natctl picks) first. */
  transports: Transport[];
  addon: AddonStatus;
  writeDocs: boolean;
  resultsFile: string;
  dataPlane: { rounds: number; seconds: number; maxConnections: number };
}

export const defaultSizes = [1, 10, 100, 1000, 10000, 50000];
export const quickSizes = [1, 100, 1000];
/** Host ports are firstPort + i, plus one for "add one": the largest N that fits below 65536. */
export const maxSize = 65535 - firstPort;

export class BenchOptionError extends Error {}

function positive(env: Record<string, string | undefined>, name: string, fallback: number, integer = true, zeroOk = false): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk) || (integer && !Number.isInteger(value))) {
    throw new BenchOptionError(`${name}=${JSON.stringify(text)} must be a ${zeroOk ? 'whole number >= 0' : `positive ${integer ? 'whole ' : ''}number`}`);
  }
  return value;
}

export function parseSizes(text: string): number[] {
  const sizes = text.split(',').map((part) => part.trim().replace(/_/g, '')).filter(Boolean).map(Number);
  const bad = sizes.find((n) => !Number.isInteger(n) || n < 1 || n > maxSize);
  if (sizes.length === 0 || bad !== undefined) {
    throw new BenchOptionError(`NATCTL_BENCH_SIZES=${JSON.stringify(text)} must list mapping counts from 1 to ${maxSize}, e.g. 1,100,1000`);
  }
  return [...new Set(sizes)].sort((a, b) => a - b);
}

export function parseOptions(env: Record<string, string | undefined>, addon: AddonStatus): BenchOptions {
  const quick = env.NATCTL_BENCH_QUICK === '1';
  const sizes = env.NATCTL_BENCH_SIZES ? parseSizes(env.NATCTL_BENCH_SIZES) : quick ? quickSizes : defaultSizes;
  let transports: Transport[];
  if (env.NATCTL_NATIVE === '0') transports = ['spawned'];
  else if (env.NATCTL_NATIVE === '1') transports = addon.loaded ? ['addon'] : ['spawned'];
  else transports = addon.loaded ? ['addon', 'spawned'] : ['spawned'];
  const docs = env.NATCTL_BENCH_DOCS;
  return {
    sizes,
    rounds: positive(env, 'NATCTL_BENCH_ROUNDS', quick ? 1 : 3),
    quick,
    opTimeoutMs: positive(env, 'NATCTL_BENCH_TIMEOUT_S', 60, false) * 1000,
    budgetMs: positive(env, 'NATCTL_BENCH_BUDGET_S', quick ? 600 : 2400, false) * 1000,
    transports,
    addon,
    writeDocs: docs === undefined || docs === '' ? !quick : docs === '1',
    resultsFile: quick ? 'bench-results/quick.json' : 'bench-results/latest.json',
    dataPlane: {
      rounds: positive(env, 'NATCTL_BENCH_DP_ROUNDS', quick ? 3 : 10, true, true),
      seconds: positive(env, 'NATCTL_BENCH_DP_SECONDS', quick ? 0.5 : 1, false),
      maxConnections: positive(env, 'NATCTL_BENCH_DP_MAX', 100_000),
    },
  };
}
