// The pure parts of `npm run bench`: its configs and reference ruleset, its knobs, the table
// and docs section it writes, and the verdicts on issue 8's targets. No timing is asserted
// here (docs/performance.md: speed is measured by the bench, never by tests).
import { describe, expect, it } from 'vitest';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { benchConfig, benchMappings, extraMapping, firstPort, ratePort, workload } from '../../src/bench/configs.js';
import { parseClientReport } from '../../src/bench/conn-rate.js';
import { roundOrder } from '../../src/bench/data-plane.js';
import { BenchOptionError, defaultSizes, maxSize, parseOptions, quickSizes } from '../../src/bench/options.js';
import { referenceRuleset } from '../../src/bench/reference.js';
import { beginMarker, controlPlaneTable, dataPlaneTable, endMarker, markdownSection, markdownTable, replaceSection, textReport, textTable } from '../../src/bench/report.js';
import type { BenchResults, Measurement, Operation, Outcome, Via } from '../../src/bench/results.js';
import { median } from '../../src/bench/results.js';
import { evaluateTargets } from '../../src/bench/targets.js';
import type { Transport } from '../../src/bench/options.js';

const noAddon = { loaded: false, reason: 'not built in this version' };
const addon = { loaded: true, reason: 'loaded' };

describe('bench configs', () => {
  it('are valid natctl configs with N distinct host ports, the last one on the rate server', () => {
    for (const n of [1, 2, 251, 600]) {
      const config = benchConfig(n);
      const model = buildModel(parseConfigObject(config));
      expect(model.mappings).toHaveLength(n);
      const ports = config.mappings!.map((m) => m.hostPort);
      expect(new Set(ports).size).toBe(n);
      expect(Math.min(...(ports as number[]))).toBe(firstPort);
      expect(config.mappings!.at(-1)).toMatchObject({ hostPort: ratePort(n), target: `${workload.address}:${workload.ratePort}` });
    }
  });

  it('"add one" adds exactly one mapping on the next free port, and the largest N still fits in a port', () => {
    const plus = benchConfig(5, true);
    expect(plus.mappings).toHaveLength(6);
    expect(plus.mappings!.slice(0, 5)).toEqual(benchConfig(5).mappings);
    expect(plus.mappings![5]).toMatchObject({ hostPort: firstPort + 5 });
    expect(() => buildModel(parseConfigObject(plus))).not.toThrow();
    expect(extraMapping(maxSize - 1).hostPort).toBeLessThanOrEqual(65535);
  });

  it('the map-based reference holds the same mappings as one map element each', () => {
    const text = referenceRuleset(3);
    expect(text).toContain('type inet_proto . inet_service : ipv4_addr . inet_service');
    expect(text).toContain('dnat ip to meta l4proto . th dport map @dnat4');
    for (const m of benchMappings(3)) expect(text).toContain(`tcp . ${m.hostPort} : ${m.address} . ${m.port}`);
    expect(text.match(/tcp \. \d+ :/g)).toHaveLength(3);
    expect(referenceRuleset(3, true).match(/tcp \. \d+ :/g)).toHaveLength(4);
  });
});

describe('bench options', () => {
  it('default to the full set, and quick mode to a small one that leaves the docs alone', () => {
    const full = parseOptions({}, noAddon);
    expect(full.sizes).toEqual(defaultSizes);
    expect(full.sizes).toEqual(expect.arrayContaining([1, 100, 1000, 10000, 50000]));
    expect(full.writeDocs).toBe(true);
    expect(full.resultsFile).toBe('bench-results/latest.json');
    const quick = parseOptions({ NATCTL_BENCH_QUICK: '1' }, noAddon);
    expect(quick).toMatchObject({ sizes: quickSizes, rounds: 1, writeDocs: false, resultsFile: 'bench-results/quick.json' });
  });

  it('read sizes, rounds and limits from the environment and refuse nonsense with the variable named', () => {
    const options = parseOptions({ NATCTL_BENCH_SIZES: '1000, 1,1_000,10', NATCTL_BENCH_ROUNDS: '5', NATCTL_BENCH_TIMEOUT_S: '2.5', NATCTL_BENCH_DP_ROUNDS: '0' }, noAddon);
    expect(options).toMatchObject({ sizes: [1, 10, 1000], rounds: 5, opTimeoutMs: 2500 });
    expect(options.dataPlane.rounds).toBe(0);
    for (const [name, value] of [['NATCTL_BENCH_SIZES', '0'], ['NATCTL_BENCH_SIZES', String(maxSize + 1)], ['NATCTL_BENCH_SIZES', 'ten'], ['NATCTL_BENCH_ROUNDS', '1.5'], ['NATCTL_BENCH_ROUNDS', '0'], ['NATCTL_BENCH_TIMEOUT_S', '-1']] as const) {
      expect(() => parseOptions({ [name]: value }, noAddon)).toThrow(BenchOptionError);
      expect(() => parseOptions({ [name]: value }, noAddon)).toThrow(name);
    }
  });

  it('pick transports from NATCTL_NATIVE and whether the addon loads, the default one first', () => {
    expect(parseOptions({}, noAddon).transports).toEqual(['spawned']);
    expect(parseOptions({}, addon).transports).toEqual(['addon', 'spawned']);
    expect(parseOptions({ NATCTL_NATIVE: '0' }, addon).transports).toEqual(['spawned']);
    expect(parseOptions({ NATCTL_NATIVE: '1' }, addon).transports).toEqual(['addon']);
    expect(parseOptions({ NATCTL_NATIVE: '1' }, noAddon).transports).toEqual(['spawned']);
  });
});

describe('bench helpers', () => {
  it('median, client report parsing and the rotating round order', () => {
    expect(median([])).toBeUndefined();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(parseClientReport('12000 0 1.0001\n')).toEqual({ ok: 12000, errors: 0, seconds: 1.0001 });
    expect(parseClientReport('Traceback (most recent call last)')).toBeUndefined();
    expect(parseClientReport('5 0 0')).toBeUndefined();
    expect(roundOrder(['a', 'b', 'c'], 0)).toEqual(['a', 'b', 'c']);
    expect(roundOrder(['a', 'b', 'c'], 4)).toEqual(['b', 'c', 'a']);
    expect(roundOrder([], 3)).toEqual([]);
  });
});

/** A run's results with the given control-plane outcomes (everything else absent). */
function results(measurements: Measurement[], extra: Partial<BenchResults> = {}, transports: Transport[] = ['spawned']): BenchResults {
  return {
    machine: { cpuModel: 'Test CPU', cores: 2, kernel: '6.1.0', nft: 'nftables v1.0.6', node: 'v20.0.0', python: 'Python 3.11', natctl: '0.1.0', commit: 'abc1234', date: '2026-11-23T00:00:00.000Z', addon: noAddon },
    settings: { sizes: [10, 10000, 50000], rounds: 3, quick: false, opTimeoutMs: 60000, budgetMs: 2400000, transports },
    measurements,
    stateDir: [],
    durationS: 1,
    ...extra,
  };
}

const ok = (ms: number, peakRssKiB?: number): Outcome => ({ kind: 'ok', samplesMs: [ms], medianMs: ms, ...(peakRssKiB ? { peakRssKiB } : {}) });
const m = (op: Operation, via: Via, n: number, outcome: Outcome, transport: Transport | null = via === 'nft' ? null : 'spawned'): Measurement => ({ op, via, transport, n, outcome });

describe('bench targets', () => {
  const verdict = (r: BenchResults, id: string) => evaluateTargets(r).find((v) => v.id === id)!;

  it('are met, missed (saying by how much) or not measured (saying why)', () => {
    const r = results([
      m('add', 'library', 10, ok(10)), m('remove', 'library', 10, ok(10)),
      m('add', 'library', 50000, ok(12)), m('remove', 'library', 50000, ok(20)),
      m('unchanged', 'library', 50000, ok(49)),
      m('cold', 'cli', 10000, ok(2000, 100_000)), m('raw-render', 'nft', 10000, ok(1000)), m('raw-reference', 'nft', 10000, ok(400)),
      m('cold', 'cli', 50000, { kind: 'timeout', limitMs: 60000 }),
      m('status', 'cli', 50000, ok(900, 300_000)),
    ]);
    expect(verdict(r, 'add-remove-flat')).toMatchObject({ status: 'missed', measured: '2.00x (20.0 ms / 10.0 ms), 1.33x the limit 1.50x' });
    expect(verdict(r, 'add-remove-spawned')).toMatchObject({ status: 'met', measured: '20.0 ms' });
    expect(verdict(r, 'add-remove-addon')).toMatchObject({ status: 'not measured' });
    expect(verdict(r, 'add-remove-addon').measured).toContain('addon not available');
    expect(verdict(r, 'unchanged-50k').status).toBe('met');
    expect(verdict(r, 'cold-vs-raw-10k')).toMatchObject({ status: 'missed', measured: '2.00x (2.00 s / 1.00 s), 1.54x the limit 1.30x' });
    expect(verdict(r, 'render-vs-reference-10k')).toMatchObject({ status: 'missed', measured: '2.50x (1.00 s / 400.0 ms), 1.25x the limit 2.00x' });
    expect(verdict(r, 'cold-50k').status).toBe('missed');
    expect(verdict(r, 'cold-50k').measured).toContain('> 60.0 s (timed out)');
    expect(verdict(r, 'status-50k').status).toBe('met');
    expect(verdict(r, 'rss-50k')).toMatchObject({ status: 'missed', measured: '307 MB, 1.23x the limit 250 MB' });
    expect(verdict(r, 'dataplane-flat')).toMatchObject({ status: 'not measured', measured: 'data plane not measured' });
  });

  it('count the peak RSS of a CLI killed at its time limit as a lower bound', () => {
    const killed = results([m('cold', 'cli', 50000, { kind: 'timeout', limitMs: 60000, peakRssKiB: 1_200_000 }), m('status', 'cli', 50000, ok(900, 100_000))]);
    expect(verdict(killed, 'rss-50k')).toMatchObject({ status: 'missed', measured: '> 1229 MB (timed out), over 4.92x the limit 250 MB' });
    const small = results([m('cold', 'cli', 50000, { kind: 'timeout', limitMs: 60000, peakRssKiB: 100_000 }), m('status', 'cli', 50000, ok(900, 100_000))]);
    expect(verdict(small, 'rss-50k').status).toBe('not measured');
  });

  it('judge the data plane on the ratios to no NAT measured in the same run', () => {
    const point = (ruleset: 'none' | 'natctl' | 'reference', n: number, medianRatio: number) => ({ ruleset, n, rates: [], ratios: [medianRatio], extraUs: [], medianRatio });
    const r = results([], { dataPlane: { client: 'python3', cpu: 1, rounds: 1, secondsPerPoint: 1, points: [point('none', 0, 1), point('natctl', 1, 0.8), point('natctl', 50000, 0.2), point('reference', 50000, 0.82)] } });
    expect(verdict(r, 'dataplane-flat')).toMatchObject({ status: 'missed', measured: '0.25 (0.20 / 0.80), 0.70 short of 0.95' });
    expect(verdict(r, 'dataplane-vs-nonat')).toMatchObject({ status: 'missed', measured: '0.20, 0.60 short of 0.80' });
    const flat = results([], { dataPlane: { client: 'python3', cpu: 1, rounds: 1, secondsPerPoint: 1, points: [point('natctl', 1, 0.84), point('natctl', 50000, 0.82)] } });
    expect(verdict(flat, 'dataplane-flat').status).toBe('met');
    expect(verdict(flat, 'dataplane-vs-nonat').status).toBe('met');
  });

  it('are not measured when the run did not include N = 50,000', () => {
    const r = { ...results([]), settings: { ...results([]).settings, sizes: [1, 100] } };
    for (const v of evaluateTargets(r)) expect(v.status).toBe('not measured');
  });
});

describe('bench report', () => {
  const r = results([
    m('raw-render', 'nft', 10, ok(12.345)), m('cold', 'cli', 10, ok(1500, 70_000)),
    m('cold', 'cli', 10000, { kind: 'timeout', limitMs: 60000 }),
    m('unchanged', 'cli', 10000, { kind: 'skipped', reason: 'the cold apply did not complete' }),
    m('add', 'cli', 10000, { kind: 'skipped', reason: 'the cold apply did not complete' }),
  ], { stateDir: [{ transport: 'spawned', n: 10, bytes: 2_500_000 }] });

  it('has one row per operation and one column per N, saying why cells are empty', () => {
    const table = controlPlaneTable(r);
    expect(table.header).toEqual(['operation', 'N = 10', 'N = 10,000', 'N = 50,000']);
    const row = (label: string) => table.rows.find((x) => x[0] === label);
    expect(row("raw `nft -f` of natctl's render")).toEqual(["raw `nft -f` of natctl's render", '12.3 ms', '', '']);
    expect(row('cold apply, CLI (spawned nft)')).toEqual(['cold apply, CLI (spawned nft)', '1.50 s', 'timed out (> 60.0 s)', '']);
    expect(row('peak RSS of the CLI, cold apply (spawned nft)')?.[1]).toBe('72 MB');
    expect(row('state dir after 5 applies (spawned nft)')?.[1]).toBe('2.50 MB');
    expect(table.notes).toEqual(['N = 10,000: skipped: the cold apply did not complete']);
  });

  it('shows the data plane as rates, ratios to no NAT and extra CPU per connection, with why a point has none', () => {
    const dp = results([], { dataPlane: { client: 'python3', cpu: 1, rounds: 2, secondsPerPoint: 1, points: [
      { ruleset: 'none', n: 0, rates: [20000, 20000, 20000], ratios: [], extraUs: [], medianRate: 20000 },
      { ruleset: 'natctl', n: 50000, rates: [4000, 4000], ratios: [0.2, 0.2], extraUs: [200, 200], medianRate: 4000, medianRatio: 0.2, medianExtraUs: 200 },
      { ruleset: 'reference', n: 50000, rates: [], ratios: [], extraUs: [], note: 'not verified: conntrack shows no flow' },
    ] } });
    const table = dataPlaneTable(dp);
    expect(table.rows).toEqual([
      ['no NAT', '-', '20,000', '1', '0', '3'],
      ["natctl's ruleset", '50,000', '4,000', '0.20', '+200.0 us', '2'],
      ['map-based reference', '50,000', '-', '-', '-', '0'],
    ]);
    expect(table.notes).toEqual(['map-based reference at N = 50,000: not verified: conntrack shows no flow']);
  });

  it('formats aligned text and markdown tables', () => {
    const table = { header: ['a', 'bb'], rows: [['x|y', '1'], ['long name', '22']] };
    expect(textTable(table).split('\n')).toEqual(['a          bb', '---------  --', 'x|y         1', 'long name  22']);
    expect(markdownTable(table).split('\n')).toEqual(['| a | bb |', '|---|---:|', '| x\\|y | 1 |', '| long name | 22 |']);
    const text = textReport(r);
    expect(text).toContain('Test CPU, 2 cores; kernel 6.1.0');
    expect(text).toContain('verdict');
  });

  it('rewrites only its own section of docs/performance.md', () => {
    const section = markdownSection(r);
    expect(section).toContain('### Targets (issue 8)');
    expect(section).toContain('| cold apply, CLI (spawned nft) | 1.50 s | timed out (> 60.0 s) |  |');
    const created = replaceSection(undefined, section);
    expect(created.startsWith('# Performance\n')).toBe(true);
    expect(created).toContain(`${beginMarker}\n${section}\n${endMarker}`);
    const theirs = '# Performance\n\nintro\n\n## In-process nftables path\n\ntheir text\n';
    const appended = replaceSection(theirs, 'first');
    expect(appended.startsWith(theirs.trimEnd())).toBe(true);
    const replaced = replaceSection(`${appended}\n## After\n\nmore\n`, 'second');
    expect(replaced).toContain(`${beginMarker}\nsecond\n${endMarker}`);
    expect(replaced).not.toContain('first');
    expect(replaced).toContain('## In-process nftables path\n\ntheir text');
    expect(replaced).toContain('## After\n\nmore');
  });
});
