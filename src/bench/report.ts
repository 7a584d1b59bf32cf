// Turning one run's results into the printed table, the markdown section of
// docs/performance.md (between the bench markers; the rest of that file belongs to others),
// and back. Pure.
import { formatCount, formatMB, formatMs } from './format.js';
import type { Transport } from './options.js';
import { type BenchResults, findMeasurement, type Operation, type Outcome, type Via } from './results.js';
import { evaluateTargets } from './targets.js';

export const beginMarker = '<!-- bench:begin -->';
export const endMarker = '<!-- bench:end -->';

export interface Table {
  header: string[];
  rows: string[][];
  /** Columns after the first are right-aligned (numbers) unless listed here. */
  leftAligned?: number[];
}

const transportLabel = (t: Transport): string => (t === 'addon' ? 'addon' : 'spawned nft');

/** Why cells say "skipped" or "error", grouped by reason: reason -> the N where it happened. */
class Notes {
  private readonly byReason = new Map<string, Set<number>>();

  add(reason: string, n: number): void {
    const ns = this.byReason.get(reason) ?? new Set<number>();
    ns.add(n);
    this.byReason.set(reason, ns);
  }

  list(): string[] {
    return [...this.byReason].map(([reason, ns]) => `N = ${[...ns].sort((a, b) => a - b).map(formatCount).join(', ')}: ${reason}`);
  }
}

function cell(outcome: Outcome | undefined, notes: Notes, label: string, n: number): string {
  if (!outcome) return '';
  if (outcome.kind === 'ok') return formatMs(outcome.medianMs);
  if (outcome.kind === 'timeout') return `timed out (> ${formatMs(outcome.limitMs)})`;
  if (outcome.kind === 'skipped') notes.add(`skipped: ${outcome.reason}`, n);
  else notes.add(`error in ${label}: ${outcome.message}`, n);
  return outcome.kind;
}

const opLabels: Record<Operation, string> = {
  'raw-render': "raw `nft -f` of natctl's render",
  'raw-reference': 'raw `nft -f` of the map-based reference',
  cold: 'cold apply',
  unchanged: 'apply of an unchanged config',
  add: 'add one mapping by name (CLI: `natctl add`; library: the agent API)',
  remove: 'remove one mapping by name (`natctl rm`; the agent API)',
  status: '`status`',
};

/** The control-plane table: one row per operation, one column per N; notes say why cells are empty. */
export function controlPlaneTable(results: BenchResults): Table & { notes: string[] } {
  const sizes = results.settings.sizes;
  const notes = new Notes();
  const header = ['operation', ...sizes.map((n) => `N = ${formatCount(n)}`)];
  const rows: string[][] = [];
  const row = (label: string, op: Operation, via: Via, transport: Transport | null): void => {
    rows.push([label, ...sizes.map((n) => cell(findMeasurement(results, op, via, transport, n)?.outcome, notes, label, n))]);
  };
  row(opLabels['raw-render'], 'raw-render', 'nft', null);
  row(opLabels['raw-reference'], 'raw-reference', 'nft', null);
  // Transports next to each other: spawned nft against the addon, row by row.
  const transports = results.settings.transports;
  for (const op of ['cold', 'unchanged', 'add', 'remove', 'status'] as const) {
    for (const via of op === 'status' ? (['cli'] as const) : (['cli', 'library'] as const)) {
      for (const t of transports) row(`${opLabels[op]}, ${via === 'cli' ? 'CLI' : 'library'} (${transportLabel(t)})`, op, via, t);
    }
  }
  for (const op of ['cold', 'unchanged', 'add', 'remove', 'status'] as const) {
    for (const t of transports) {
      rows.push([`peak RSS of the CLI, ${opLabels[op]} (${transportLabel(t)})`, ...sizes.map((n) => {
        const o = findMeasurement(results, op, 'cli', t, n)?.outcome;
        if (o?.kind === 'ok' && o.peakRssKiB !== undefined) return formatMB(o.peakRssKiB * 1024);
        if (o?.kind === 'timeout' && o.peakRssKiB !== undefined) return `> ${formatMB(o.peakRssKiB * 1024)} (timed out)`;
        return o ? '-' : '';
      })]);
    }
  }
  for (const t of transports) {
    rows.push([`state dir after 5 applies (${transportLabel(t)})`, ...sizes.map((n) => {
      const s = results.stateDir.find((x) => x.transport === t && x.n === n);
      if (s?.bytes !== undefined) return formatMB(s.bytes);
      if (s?.note) notes.add(`state dir not measured: ${s.note}`, n);
      return s ? '-' : '';
    })]);
  }
  return { header, rows, notes: notes.list() };
}

export function dataPlaneTable(results: BenchResults): Table & { notes: string[] } {
  const header = ['ruleset', 'N', 'new connections/s (median)', 'ratio to no NAT (median)', 'extra CPU per connection (median)', 'rounds'];
  const dp = results.dataPlane;
  const notes: string[] = [];
  if (!dp) return { header, rows: [], notes: ['data plane not measured'] };
  if (dp.note) notes.push(dp.note);
  const names = { none: 'no NAT', natctl: "natctl's ruleset", reference: 'map-based reference' } as const;
  const rows = dp.points.map((p) => {
    if (p.note) notes.push(`${names[p.ruleset]}${p.n ? ` at N = ${formatCount(p.n)}` : ''}: ${p.note}`);
    else if (p.ruleset === 'natctl' && p.setupMs !== undefined) notes.push(`natctl's ruleset at N = ${formatCount(p.n)} was set up by a CLI cold apply that took ${formatMs(p.setupMs)}`);
    return [
      names[p.ruleset],
      p.ruleset === 'none' ? '-' : formatCount(p.n),
      p.medianRate === undefined ? '-' : formatCount(p.medianRate),
      p.ruleset === 'none' ? '1' : p.medianRatio === undefined ? '-' : p.medianRatio.toFixed(2),
      p.ruleset === 'none' ? '0' : p.medianExtraUs === undefined ? '-' : `${p.medianExtraUs >= 0 ? '+' : ''}${p.medianExtraUs.toFixed(1)} us`,
      String(p.ruleset === 'none' ? p.rates.length : p.ratios.length),
    ];
  });
  return { header, rows, notes };
}

export function targetsTable(results: BenchResults): Table {
  return { header: ['target', 'measured', 'verdict'], rows: evaluateTargets(results).map((v) => [v.target, v.measured, v.status]), leftAligned: [1, 2] };
}

export function textTable(table: Table): string {
  const widths = table.header.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)));
  const left = (i: number) => i === 0 || (table.leftAligned ?? []).includes(i);
  const line = (cells: string[]) => cells.map((c, i) => (left(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(table.header), line(widths.map((w) => '-'.repeat(w))), ...table.rows.map(line)].join('\n');
}

const escapeCell = (text: string): string => text.replace(/\|/g, '\\|');

export function markdownTable(table: Table): string {
  const align = table.header.map((_, i) => (i === 0 || (table.leftAligned ?? []).includes(i) ? '---' : '---:'));
  const line = (cells: string[]) => `| ${cells.map(escapeCell).join(' | ')} |`;
  return [line(table.header), `|${align.join('|')}|`, ...table.rows.map(line)].join('\n');
}

export function machineLine(results: BenchResults): string {
  const m = results.machine;
  return `${m.cpuModel}, ${m.cores} cores; kernel ${m.kernel}; ${m.nft}; node ${m.node}; ${m.python}; natctl ${m.natctl} (${m.commit}); addon: ${m.addon.loaded ? 'loaded' : `not available (${m.addon.reason})`}`;
}

function settingsLine(results: BenchResults): string {
  const s = results.settings;
  const dp = results.dataPlane;
  return `control plane: median of ${s.rounds} round(s) (the library's unchanged apply, add and remove: of ${Math.max(s.rounds, 9)}), ${formatMs(s.opTimeoutMs)} limit per operation, ${formatMs(s.budgetMs)} for the whole part` +
    (dp ? `; data plane: ${dp.rounds} round(s) of ${dp.secondsPerPoint} s per point, client and server on CPU ${dp.cpu}` : '') +
    `; run took ${formatMs(results.durationS * 1000)}`;
}

export function textReport(results: BenchResults): string {
  const cp = controlPlaneTable(results);
  const dp = dataPlaneTable(results);
  const parts = [
    `natctl bench, ${results.machine.date}`,
    machineLine(results),
    settingsLine(results),
    '',
    textTable(cp),
    ...cp.notes.map((n) => `  note: ${n}`),
    '',
    textTable(dp),
    ...dp.notes.map((n) => `  note: ${n}`),
    '',
    textTable(targetsTable(results)),
    '',
  ];
  return parts.join('\n');
}

/** The generated section of docs/performance.md, markers excluded. */
export function markdownSection(results: BenchResults): string {
  const cp = controlPlaneTable(results);
  const dp = dataPlaneTable(results);
  const bullets = (notes: string[]) => (notes.length ? ['', ...notes.map((n) => `- ${n}`)] : []);
  return [
    '## Latest benchmark',
    '',
    `Written by \`npm run bench\` on ${results.machine.date}; everything between the bench markers is replaced by the next run.`,
    '',
    `- machine: ${machineLine(results)}`,
    `- ${settingsLine(results)}`,
    '',
    '### Control plane',
    '',
    markdownTable(cp),
    ...bullets(cp.notes),
    '',
    '### Data plane',
    '',
    dp.rows.length ? markdownTable(dp) : '(not measured)',
    ...bullets(dp.notes),
    '',
    '### Targets (issue 8)',
    '',
    markdownTable(targetsTable(results)),
  ].join('\n');
}

/** Puts `section` between the bench markers of `doc` (appended when absent; a new file when doc is undefined). */
export function replaceSection(doc: string | undefined, section: string): string {
  const block = `${beginMarker}\n${section}\n${endMarker}`;
  if (doc === undefined) return `# Performance\n\n${block}\n`;
  const begin = doc.indexOf(beginMarker);
  const end = doc.indexOf(endMarker, begin);
  if (begin >= 0 && end > begin) return doc.slice(0, begin) + block + doc.slice(end + endMarker.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}
