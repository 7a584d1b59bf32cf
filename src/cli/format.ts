// Human-readable output for the CLI: plan diffs, status tables, history. Colour only on a
// terminal (and never with NO_COLOR).
import type { ApplyResult, StatusReport } from '../engine/controller.js';
import type { Change, Plan } from '../engine/plan.js';
import type { Generation } from '../engine/state.js';
import type { CheckResult } from '../doctor/checks.js';
import { formatPortRange } from '../config/ports.js';
import type { Mapping } from '../model/model.js';
import { describeTargets, formatEndpoint } from '../model/target.js';

const useColour = (): boolean => Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined;
const paint = (code: number, text: string): string => (useColour() ? `\u001b[${code}m${text}\u001b[0m` : text);
export const green = (t: string): string => paint(32, t);
export const red = (t: string): string => paint(31, t);
export const yellow = (t: string): string => paint(33, t);
export const dim = (t: string): string => paint(2, t);

function summarize(change: Change): string {
  if (change.kind !== 'mapping') return '';
  const m = (change.after ?? change.before) as Mapping;
  const host = m.hostIp !== undefined || m.family === 6 ? formatEndpoint(m.hostIp ?? '::', m.hostPorts) : `*:${formatPortRange(m.hostPorts)}`;
  return ` ${m.proto} ${host} -> ${describeTargets(m)}`;
}

/** formatPlan's text without its final newline, in pieces (a line each: 50,000 on a first apply). */
function* planPieces(plan: Plan): Generator<string> {
  const drift = (plan.warnings ?? []).map((w) => `${yellow(`warning: ${w}`)}\n`).join('') + (plan.drift ? `${yellow('the live ruleset differs from the last apply: apply will rewrite it')}\n` : '');
  if (!plan.changes.length) {
    yield `${drift}no changes (${plan.unchanged} object(s) unchanged)`;
    return;
  }
  if (drift) yield drift;
  // The colour is decided once, not per line (process.env is slow to read), and the ops are
  // counted in the same pass.
  const colour = useColour();
  const tint = (code: number, text: string): string => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  const counts = { add: 0, change: 0, remove: 0 };
  for (const change of plan.changes) {
    counts[change.op]++;
    const text = `${change.kind} ${change.name}${summarize(change)}`;
    if (change.op === 'add') yield `${tint(32, `+ ${text}`)}\n`;
    else if (change.op === 'remove') yield `${tint(31, `- ${text}`)}\n`;
    else yield `${tint(33, `~ ${text}`)}\n`;
  }
  yield tint(2, `${counts.add} to add, ${counts.change} to change, ${counts.remove} to remove, ${plan.unchanged} unchanged`);
}

export function formatPlan(plan: Plan): string {
  return `${[...planPieces(plan)].join('')}\n`;
}

/**
 * formatApply's text in pieces, for a writer that sends them in chunks: at 50,000 mappings the
 * whole text (and the copies joining it makes) is megabytes at the end of the apply, when
 * natctl's memory peaks (docs/performance.md).
 */
export function* formatApplyPieces(result: ApplyResult): Generator<string> {
  if (result.dryRun) {
    yield 'dry run: nothing was changed\n';
    yield* planPieces(result.plan);
  } else if (!result.changed) {
    yield `no changes: the kernel already holds generation ${result.generation?.generation ?? '?'}`;
  } else {
    yield* planPieces(result.plan);
    if (result.repairedDrift) yield `\n${yellow('repaired drift: the live ruleset had been changed outside natctl')}`;
    yield `\n${green(`applied generation ${result.generation?.generation ?? '?'}`)}`;
  }
  for (const warning of result.warnings) yield `\n${yellow(`warning: ${warning}`)}`;
  yield '\n';
}

export function formatApply(result: ApplyResult): string {
  return [...formatApplyPieces(result)].join('');
}

function table(header: string[], rows: string[][]): string {
  // Widths in a loop: `Math.max(...column)` passes every row as an argument, which overflows the
  // stack past ~120,000 rows (a status of that many mappings).
  const widths = header.map((h) => h.length);
  for (const row of rows) row.forEach((cell, i) => void (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const lines = rows.map(line);
  lines.unshift(line(header));
  return lines.join('\n');
}

export function formatStatus(report: StatusReport): string {
  const out: string[] = [];
  const where = report.netns ? ` in netns ${report.netns}` : '';
  if (!report.active) out.push(`natctl holds no ruleset${where}`);
  else out.push(`backend ${report.backend}${where}, generation ${report.generation?.number ?? 'none'}${report.generation ? ` applied ${report.generation.time}` : ''}`);
  if (report.mappings.length) {
    out.push(table(
      ['MAPPING', 'HOST SIDE', 'TARGET', 'CONNS', 'PACKETS', 'BYTES', 'STATE'],
      report.mappings.map((m) => [m.name, m.description, m.target, String(m.connections), String(m.packets), String(m.bytes), m.state]),
    ));
  }
  if (report.blocked.length) {
    out.push(table(['BLOCK RULE', 'DROPPED PACKETS', 'BYTES'], report.blocked.map((b) => [b.name, String(b.packets), String(b.bytes)])));
  }
  if (report.drift.drifted) {
    out.push(red(`drift: the live ruleset differs from the last apply (${report.drift.missing.length} missing, ${report.drift.extra.length} extra); natctl apply --verify-full repairs it`));
    for (const line of report.drift.missing.slice(0, 10)) out.push(red(`  - ${line}`));
    for (const line of report.drift.extra.slice(0, 10)) out.push(red(`  + ${line}`));
  } else if (report.generation) out.push(green('in sync with the last apply'));
  return `${out.join('\n')}\n`;
}

export function formatHistory(generations: Generation[]): string {
  if (!generations.length) return 'no generations recorded\n';
  return `${table(
    ['GEN', 'TIME', 'KIND', 'BACKEND', 'MAPPINGS', 'HASH'],
    generations.map((g) => [String(g.generation), g.time, g.kind, g.backend, String(g.config.mappings?.length ?? 0), g.hash.slice(0, 12)]),
  )}\n`;
}

export function formatDoctor(results: CheckResult[]): string {
  const mark: Record<CheckResult['status'], string> = { pass: green('pass'), warn: yellow('warn'), fail: red('fail'), info: dim('info') };
  const width = Math.max(...results.map((r) => r.check.length));
  const lines = results.map((r) => `${mark[r.status]}  ${r.check.padEnd(width)}  ${r.message}${r.fix ? dim(`\n      ${' '.repeat(width)}  fix: ${r.fix}`) : ''}`);
  const count = (status: string): number => results.filter((r) => r.status === status).length;
  lines.push(`${count('pass')} pass, ${count('warn')} warn, ${count('fail')} fail`);
  return `${lines.join('\n')}\n`;
}
