// Issue 8's targets, evaluated against one run's results: met, missed (with the measured
// value and by how much) or not measured (and why). docs/performance.md shows the verdicts.
// Pure.
import { formatCount, formatMB, formatMs, formatRatio } from './format.js';
import type { Transport } from './options.js';
import { type BenchResults, findMeasurement, type Operation, type Via } from './results.js';

export type TargetStatus = 'met' | 'missed' | 'not measured';

export interface TargetVerdict {
  id: string;
  target: string;
  status: TargetStatus;
  /** The measured value, with how it compares to the limit. */
  measured: string;
}

/** A measured number: exact, only a lower bound (the operation timed out), or missing. */
type Value = { kind: 'exact'; v: number; detail?: string } | { kind: 'above'; v: number; detail?: string } | { kind: 'none'; why: string };

const big = 50_000;
const mid = 10_000;
const small = 10;

function ms(results: BenchResults, op: Operation, via: Via, transport: Transport | null, n: number): Value {
  if (!results.settings.sizes.includes(n)) return { kind: 'none', why: `N = ${formatCount(n)} not in this run` };
  const m = findMeasurement(results, op, via, transport, n);
  const what = `${op} (${via}${transport ? `, ${transport}` : ''}) at N = ${formatCount(n)}`;
  if (!m) return { kind: 'none', why: `${what} not measured` };
  const o = m.outcome;
  if (o.kind === 'ok') return { kind: 'exact', v: o.medianMs };
  if (o.kind === 'timeout') return { kind: 'above', v: o.limitMs };
  return { kind: 'none', why: `${what} ${o.kind === 'skipped' ? `skipped: ${o.reason}` : `failed: ${o.message}`}` };
}

/** a / b; `show` formats a and b for the detail ("18.9 s / 4.49 s"). */
function ratio(a: Value, b: Value, show?: (v: number) => string): Value {
  if (a.kind === 'none') return a;
  if (b.kind === 'none') return b;
  if (b.kind === 'above') return { kind: 'none', why: 'the reference measurement timed out' };
  const v = a.v / b.v;
  if (!show) return { kind: a.kind, v };
  return { kind: a.kind, v, detail: `${a.kind === 'above' ? '> ' : ''}${show(a.v)} / ${show(b.v)}` };
}

function worst(values: Value[]): Value {
  const none = values.find((v) => v.kind === 'none');
  if (none) return none;
  const numeric = values as Exclude<Value, { kind: 'none' }>[];
  const top = numeric.reduce((x, y) => (y.v > x.v ? y : x));
  return numeric.some((v) => v.kind === 'above' && v.v >= top.v) ? { kind: 'above', v: top.v } : top;
}

/** `value` must stay at or under `limit` (or strictly under when `strict`). */
function atMost(id: string, target: string, value: Value, limit: number, show: (v: number) => string, strict = false): TargetVerdict {
  if (value.kind === 'none') return { id, target, status: 'not measured', measured: value.why };
  const ok = strict ? value.v < limit : value.v <= limit;
  const shown = `${value.kind === 'above' ? `> ${show(value.v)} (timed out)` : show(value.v)}${value.detail ? ` (${value.detail})` : ''}`;
  if (value.kind === 'above' && ok) return { id, target, status: 'not measured', measured: `${shown}: the limit is unknown to this run` };
  if (ok) return { id, target, status: 'met', measured: shown };
  return { id, target, status: 'missed', measured: `${shown}, ${value.kind === 'above' ? 'over ' : ''}${formatRatio(value.v / limit)} the limit ${show(limit)}` };
}

function atLeast(id: string, target: string, value: Value, limit: number, show: (v: number) => string): TargetVerdict {
  if (value.kind === 'none') return { id, target, status: 'not measured', measured: value.why };
  if (value.kind === 'above') return { id, target, status: 'not measured', measured: 'only a bound was measured' };
  const shown = `${show(value.v)}${value.detail ? ` (${value.detail})` : ''}`;
  if (value.v >= limit) return { id, target, status: 'met', measured: shown };
  return { id, target, status: 'missed', measured: `${shown}, ${show(limit - value.v)} short of ${show(limit)}` };
}

export function evaluateTargets(results: BenchResults): TargetVerdict[] {
  const transports = results.settings.transports;
  const main = transports[0] ?? 'spawned';
  const cliTransport: Transport = transports.includes('spawned') ? 'spawned' : main;
  const verdicts: TargetVerdict[] = [];
  const plain = (v: number) => v.toFixed(2);

  const addRemove = (transport: Transport, n: number) => [ms(results, 'add', 'library', transport, n), ms(results, 'remove', 'library', transport, n)];
  const [addBig, removeBig] = addRemove(main, big);
  const [addSmall, removeSmall] = addRemove(main, small);
  verdicts.push(atMost('add-remove-flat', `add or remove one mapping at N = 50,000: at most 1.5x the same at N = 10 (library, ${main})`, worst([ratio(addBig!, addSmall!, formatMs), ratio(removeBig!, removeSmall!, formatMs)]), 1.5, formatRatio));
  for (const [transport, limit] of [['addon', 10], ['spawned', 30]] as const) {
    const target = `add or remove one mapping at N = 50,000 through the library with ${transport === 'addon' ? 'the addon' : 'spawned nft'}: under ${limit} ms`;
    if (!transports.includes(transport)) {
      const why = transport === 'addon' && !results.machine.addon.loaded ? `addon not available (${results.machine.addon.reason})` : `transport ${transport} not selected (NATCTL_NATIVE)`;
      verdicts.push({ id: `add-remove-${transport}`, target, status: 'not measured', measured: why });
    } else {
      verdicts.push(atMost(`add-remove-${transport}`, target, worst(addRemove(transport, big)), limit, formatMs, true));
    }
  }
  verdicts.push(atMost('unchanged-50k', `apply of an unchanged config at N = 50,000: under 50 ms through the library (${main})`, ms(results, 'unchanged', 'library', main, big), 50, formatMs, true));
  verdicts.push(atMost('cold-vs-raw-10k', `cold apply at N = 10,000: at most 1.3x raw \`nft -f\` of natctl's own render (CLI, ${cliTransport})`, ratio(ms(results, 'cold', 'cli', cliTransport, mid), ms(results, 'raw-render', 'nft', null, mid), formatMs), 1.3, formatRatio));
  verdicts.push(atMost('render-vs-reference-10k', 'raw load of natctl\'s render at N = 10,000: at most 2x the map-based reference', ratio(ms(results, 'raw-render', 'nft', null, mid), ms(results, 'raw-reference', 'nft', null, mid), formatMs), 2, formatRatio));
  verdicts.push(atMost('cold-50k', `cold apply of 50,000 mappings: under 5 s (CLI, ${main})`, ms(results, 'cold', 'cli', main, big), 5000, formatMs, true));
  verdicts.push(atMost('status-50k', `\`status\` at N = 50,000: under 1 s (CLI, ${main})`, ms(results, 'status', 'cli', main, big), 1000, formatMs, true));
  verdicts.push(atMost('rss-50k', `peak RSS of the CLI at 50,000 mappings: under 250 MB (${main}, the largest over its operations)`, peakRss(results, main, big), 250e6, formatMB, true));

  const dp = results.dataPlane;
  const point = (n: number) => dp?.points.find((p) => p.ruleset === 'natctl' && p.n === n);
  const ratioAt = (n: number): Value => {
    if (!dp) return { kind: 'none', why: 'data plane not measured' };
    if (dp.note) return { kind: 'none', why: dp.note };
    const p = point(n);
    if (!p) return { kind: 'none', why: `natctl at N = ${formatCount(n)} not in this run` };
    if (p.medianRatio === undefined) return { kind: 'none', why: p.note ?? 'no rounds completed' };
    return { kind: 'exact', v: p.medianRatio };
  };
  verdicts.push(atLeast('dataplane-flat', 'data plane: connection rate at N = 50,000 at least 0.95x that at N = 1 (ratios to no NAT)', ratio(ratioAt(big), ratioAt(1), plain), 0.95, plain));
  verdicts.push(atLeast('dataplane-vs-nonat', 'data plane: connection rate at N = 50,000 at least 0.8x no NAT', ratioAt(big), 0.8, plain));
  return verdicts;
}

function peakRss(results: BenchResults, transport: Transport, n: number): Value {
  if (!results.settings.sizes.includes(n)) return { kind: 'none', why: `N = ${formatCount(n)} not in this run` };
  // A CLI killed at its time limit gives a lower bound (its peak so far).
  const values: Value[] = [];
  for (const m of results.measurements) {
    if (m.via !== 'cli' || m.transport !== transport || m.n !== n) continue;
    if ((m.outcome.kind === 'ok' || m.outcome.kind === 'timeout') && m.outcome.peakRssKiB !== undefined) {
      values.push({ kind: m.outcome.kind === 'ok' ? 'exact' : 'above', v: m.outcome.peakRssKiB * 1024 });
    }
  }
  if (values.length === 0) return { kind: 'none', why: `no CLI operation measured at N = ${formatCount(n)}` };
  return worst(values);
}
