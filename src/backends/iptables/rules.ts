// The iptables-legacy backend's data: natctl's part of one table of one family (its chains,
// their rules, the jumps into them from built-in chains), how it is written as
// `iptables-restore` input, and how `iptables-save -c` output is read back into it.
// Rules are kept in exactly the form iptables-save prints them (docs/iptables.md), so
// verifying a load is a comparison of text.
import type { Family } from '../../config/addr.js';

export type IptTable = 'nat' | 'filter' | 'mangle';
export const iptTables: readonly IptTable[] = ['nat', 'filter', 'mangle'];
export const isIptTable = (name: string): name is IptTable => (iptTables as readonly string[]).includes(name);

/** Every chain natctl owns starts with this; nothing else in the kernel is ever touched. */
export const chainPrefix = 'NATCTL-';

/** A jump from a built-in chain into natctl's chains. `first`: it must be the chain's first rule. */
export interface Jump {
  chain: string;
  /** The rule after `-A CHAIN `, as iptables-save prints it. */
  spec: string;
  first: boolean;
}

export interface TableRules {
  family: Family;
  table: IptTable;
  /** natctl's chains, in declaration order. */
  chains: string[];
  /** `-A CHAIN SPEC` lines, as iptables-save prints them, in order. */
  rules: string[];
  jumps: Jump[];
}

/** One rule as read back: its counters and its `-A CHAIN SPEC` text. */
export interface SavedRule {
  packets: number;
  bytes: number;
  line: string;
}

/** natctl's part of one live table, read from iptables-save -c. */
export interface TableState {
  family: Family;
  table: IptTable;
  chains: string[];
  rules: SavedRule[];
  /** Jumps into natctl's chains found in other chains, with their position there. */
  jumps: (Jump & { index: number; packets: number; bytes: number })[];
}

/** Built-in chains where natctl's jump must be the first rule (filter FORWARD: block rules before any accept). */
export const firstJumpChains: ReadonlySet<string> = new Set(['FORWARD']);

export const tableKey = (family: Family, table: IptTable): string => `ipv${family} ${table}`;

export const restoreCommand = (family: Family): string => (family === 4 ? 'iptables-legacy-restore' : 'ip6tables-legacy-restore');
export const saveCommand = (family: Family): string => (family === 4 ? 'iptables-legacy-save' : 'ip6tables-legacy-save');

/** The chain a `-A CHAIN ...` line belongs to. */
export function ruleChain(line: string): string {
  return line.slice(3, line.indexOf(' ', 3) < 0 ? undefined : line.indexOf(' ', 3));
}

const jumpPattern = new RegExp(`(^| )-[jg] ${chainPrefix}\\S*( |$)`);
const jumpsTo = (spec: string): boolean => jumpPattern.test(spec);

/**
 * Restore input that turns `current` into `desired` (null: natctl removed) and touches nothing
 * else: declaring a chain (`:NAME - [0:0]`) under --noflush empties it (or creates it);
 * stale chains are deleted after that; jumps are inserted only where missing (checked against
 * the live table right before, under natctl's lock) and stale or misplaced ones deleted.
 * Returns null when nothing is to be done.
 */
export function restoreText(desired: TableRules | null, current: TableState | null): string | null {
  const wanted = desired?.chains ?? [];
  const present = current?.chains ?? [];
  const wantedSet = new Set(wanted);
  const stale = present.filter((c) => !wantedSet.has(c));
  if (!desired && !present.length && !(current?.jumps.length ?? 0)) return null;
  const lines: string[] = [`*${desired?.table ?? current?.table ?? 'filter'}`];
  for (const chain of [...wanted, ...stale]) lines.push(`:${chain} - [0:0]`);
  const keep = new Set<number>();
  const insert: Jump[] = [];
  for (const jump of desired?.jumps ?? []) {
    const found = (current?.jumps ?? []).findIndex((j, i) => !keep.has(i) && j.chain === jump.chain && j.spec === jump.spec && (!jump.first || j.index === 0));
    if (found >= 0) keep.add(found);
    else insert.push(jump);
  }
  (current?.jumps ?? []).forEach((jump, i) => {
    if (!keep.has(i)) lines.push(`-D ${jump.chain} ${jump.spec}`);
  });
  for (const chain of stale) lines.push(`-X ${chain}`);
  for (const jump of insert) lines.push(`-I ${jump.chain} 1 ${jump.spec}`);
  lines.push(...(desired?.rules ?? []));
  lines.push('COMMIT');
  return `${lines.join('\n')}\n`;
}

/** Reads back restore input written by `restoreText` for a host without natctl's rules. */
export function parseRestoreText(text: string, family: Family, table: IptTable): TableRules {
  const rules: TableRules = { family, table, chains: [], rules: [], jumps: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) rules.chains.push(line.slice(1).split(' ')[0] ?? '');
    else if (line.startsWith('-A ')) rules.rules.push(line);
    else {
      const jump = /^-I (\S+) 1 (.*)$/.exec(line);
      if (jump?.[1] && jump[2]) rules.jumps.push({ chain: jump[1], spec: jump[2], first: firstJumpChains.has(jump[1]) });
    }
  }
  return rules;
}

/** Splits `iptables-save -c` output into natctl's part of its nat, filter and mangle tables. */
export function parseSave(text: string, family: Family): TableState[] {
  const tables: TableState[] = [];
  let table: TableState | undefined;
  const positions = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line.startsWith('*')) {
      const name = line.slice(1);
      table = isIptTable(name) ? { family, table: name, chains: [], rules: [], jumps: [] } : undefined;
      if (table) tables.push(table);
      positions.clear();
      continue;
    }
    if (!table) continue;
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (name.startsWith(chainPrefix)) table.chains.push(name);
      continue;
    }
    const match = /^\[(\d+):(\d+)\] (-A (\S+) (.*))$/.exec(line);
    if (!match) continue;
    const [, packets = '0', bytes = '0', rule = '', chain = '', spec = ''] = match;
    const index = positions.get(chain) ?? 0;
    positions.set(chain, index + 1);
    if (chain.startsWith(chainPrefix)) table.rules.push({ packets: Number(packets), bytes: Number(bytes), line: rule });
    else if (jumpsTo(spec)) table.jumps.push({ chain, spec, first: index === 0, index, packets: Number(packets), bytes: Number(bytes) });
  }
  return tables;
}

/** Stable lines for comparisons: chains, rules without counters, jumps (and whether FORWARD's is first). */
export function normalizeTable(state: TableState): string[] {
  const key = tableKey(state.family, state.table);
  return [
    ...state.chains.map((c) => `${key} :${c}`),
    ...state.rules.map((r) => `${key} ${r.line}`),
    ...state.jumps.map((j) => `${key} jump ${j.chain}${firstJumpChains.has(j.chain) && j.index === 0 ? ' (first)' : ''} ${j.spec}`),
  ];
}

/** What differs between the rules natctl rendered for a table and the table it reads back. */
export function compareTable(desired: TableRules, live: TableState | undefined): string[] {
  const key = tableKey(desired.family, desired.table);
  const problems: string[] = [];
  const liveChains = new Set(live?.chains ?? []);
  for (const chain of desired.chains) if (!liveChains.has(chain)) problems.push(`${key}: chain ${chain} is missing`);
  const desiredChains = new Set(desired.chains);
  for (const chain of liveChains) if (!desiredChains.has(chain)) problems.push(`${key}: chain ${chain} is not declared`);
  const group = (lines: string[]): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    for (const line of lines) {
      const chain = ruleChain(line);
      out.set(chain, [...(out.get(chain) ?? []), line]);
    }
    return out;
  };
  const want = group(desired.rules);
  const have = group((live?.rules ?? []).map((r) => r.line));
  for (const chain of desired.chains) {
    const w = want.get(chain) ?? [];
    const h = have.get(chain) ?? [];
    if (!liveChains.has(chain)) continue;
    if (w.length !== h.length) problems.push(`${key}: chain ${chain} has ${h.length} rules, expected ${w.length}`);
    else {
      const index = w.findIndex((line, i) => line !== h[i]);
      if (index >= 0) problems.push(`${key}: rule ${index + 1} of ${chain} differs: expected "${w[index]}", found "${h[index]}"`);
    }
  }
  for (const jump of desired.jumps) {
    const found = (live?.jumps ?? []).filter((j) => j.chain === jump.chain && j.spec === jump.spec);
    if (!found.length) problems.push(`${key}: the jump "-A ${jump.chain} ${jump.spec}" is missing`);
    else if (jump.first && !found.some((j) => j.index === 0)) problems.push(`${key}: the jump "-A ${jump.chain} ${jump.spec}" is not the first rule of ${jump.chain}`);
  }
  return problems;
}
