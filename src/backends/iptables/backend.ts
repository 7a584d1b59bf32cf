// The iptables-legacy backend: natctl's chains in the nat and filter tables, IPv4 and IPv6,
// loaded with one `iptables-legacy-restore --noflush` per table and family (each atomic),
// read back with `iptables-legacy-save -c`. Nothing outside natctl's chains and its jumps
// into them is ever written (docs/iptables.md).
import type { Family } from '../../config/addr.js';
import { BackendCommandError, EnvironmentError } from '../../errors.js';
import type { Model } from '../../model/model.js';
import { type Backend, type LiveState, type MappingCounters, type Ruleset, type StatusExpectation, type StatusReading, readStatusByListing } from '../backend.js';
import type { Runner } from '../exec.js';
import { withTempFile } from '../tempfile.js';
import { type CheckResult, hostChecks } from '../../doctor/checks.js';
import { iptablesDoctor } from './doctor.js';
import { renderIptablesRules, renderText, tableText } from './render.js';
import {
  type IptTable, type TableRules, type TableState, compareTable, firstJumpChains, iptTables, isIptTable, normalizeTable, parseRestoreText, parseSave,
  restoreCommand, restoreText, saveCommand, tableKey,
} from './rules.js';

export interface IptablesBackendOptions {
  runner: Runner;
  /** Where restore files are written (default: the system temp dir). */
  tempDir?: string;
  /** Seconds to wait for the xtables lock held by another iptables command (`--wait`). */
  lockWaitSeconds?: number;
}

const families = [4, 6] as const;

/** The part of restore's stderr that says what went wrong, with the offending input line quoted. */
function restoreMessage(stderr: string, input: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() && !/^Try `/.test(l));
  const at = /(?:line:? )(\d+)/.exec(stderr);
  const offending = at ? input.split('\n')[Number(at[1]) - 1] : undefined;
  return [...lines.slice(0, 4), ...(offending ? [`at: ${offending}`] : [])].join('\n') || 'no output';
}

function snapshotRules(state: TableState): TableRules | null {
  if (!state.chains.length && !state.jumps.length) return null;
  return {
    family: state.family,
    table: state.table,
    chains: state.chains,
    rules: state.rules.map((r) => r.line),
    jumps: state.jumps.map((j) => ({ chain: j.chain, spec: j.spec, first: firstJumpChains.has(j.chain) && j.index === 0 })),
  };
}

const counterPattern = /--comment "natctl (mapping|forward|block) ([A-Za-z0-9_.-]+)(?: ([^"]*))?"/;

function liveStateOf(states: TableState[]): LiveState {
  const counters = new Map<string, MappingCounters>();
  const blocked = new Map<string, { name: string; packets: number; bytes: number }>();
  const entry = (name: string): MappingCounters => {
    let found = counters.get(name);
    if (!found) counters.set(name, (found = { name, description: '', connections: 0, packets: 0, bytes: 0 }));
    return found;
  };
  for (const state of states) {
    for (const rule of state.rules) {
      const match = counterPattern.exec(rule.line);
      if (!match) continue;
      const [, kind, name = '', description] = match;
      if (kind === 'mapping') {
        const mapping = entry(name);
        mapping.connections += rule.packets;
        if (description) mapping.description = description;
      } else if (kind === 'forward') {
        const mapping = entry(name);
        mapping.packets += rule.packets;
        mapping.bytes += rule.bytes;
      } else {
        const block = blocked.get(name) ?? { name, packets: 0, bytes: 0 };
        block.packets += rule.packets;
        block.bytes += rule.bytes;
        blocked.set(name, block);
      }
    }
  }
  return {
    raw: JSON.stringify(states),
    normalized: states.flatMap(normalizeTable).join('\n'),
    counters: [...counters.values()],
    blocked: [...blocked.values()],
  };
}

export class IptablesBackend implements Backend {
  readonly name = 'iptables-legacy' as const;
  /** How an operator looks at what natctl holds (for recovery hints). */
  readonly inspectCommand = 'iptables-legacy-save | grep NATCTL; ip6tables-legacy-save | grep NATCTL';
  private readonly runner: Runner;
  private readonly tempDir: string | undefined;
  private readonly wait: number;
  private readonly renders = new WeakMap<Ruleset, TableRules[]>();
  private readonly states = new WeakMap<LiveState, TableState[]>();

  constructor(options: IptablesBackendOptions) {
    this.runner = options.runner;
    this.tempDir = options.tempDir;
    this.wait = options.lockWaitSeconds ?? 10;
  }

  render(model: Model): Ruleset {
    const { tables: rendered } = renderIptablesRules(model);
    const ruleset: Ruleset = {
      backend: this.name,
      text: renderText({ tables: rendered }),
      payloads: rendered.map((rules) => ({ family: rules.family, table: rules.table, text: tableText(rules) })),
    };
    this.renders.set(ruleset, rendered);
    return ruleset;
  }

  private rulesOf(ruleset: Ruleset): TableRules[] {
    const known = this.renders.get(ruleset);
    if (known) return known;
    if (!ruleset.payloads) throw new EnvironmentError(`a ${ruleset.backend} ruleset cannot be loaded by the iptables-legacy backend`);
    return ruleset.payloads.map((p) => {
      if (!isIptTable(p.table)) throw new EnvironmentError(`a ruleset part for table ${JSON.stringify(p.table)} cannot be loaded by the iptables-legacy backend`);
      return parseRestoreText(p.text, p.family, p.table);
    });
  }

  private async restore1(family: Family, table: IptTable, text: string, test: boolean): Promise<void> {
    const command = restoreCommand(family);
    await withTempFile('rules', text, async (file) => {
      const args = [...(test ? ['--test'] : []), '--noflush', `--wait=${this.wait}`, file];
      const result = await this.runner.run(command, args);
      if (result.exitCode === 0) return;
      if (/Permission denied|you must be root/i.test(result.stderr)) throw new EnvironmentError(`${command} needs root (CAP_NET_ADMIN)`);
      throw new BackendCommandError(`${command}${test ? ' --test' : ''} --noflush (${tableKey(family, table)})`, result.exitCode, restoreMessage(result.stderr, text));
    }, this.tempDir);
  }

  async check(ruleset: Ruleset): Promise<void> {
    for (const rules of this.rulesOf(ruleset)) await this.restore1(rules.family, rules.table, tableText(rules), true);
  }

  /** natctl's part of every table, keyed by tableKey; one iptables-save per family. */
  private async readTables(): Promise<Map<string, TableState>> {
    const out = new Map<string, TableState>();
    const saved = await Promise.all(families.map(async (family) => {
      const command = saveCommand(family);
      const result = await this.runner.run(command, ['-c']);
      if (result.exitCode !== 0) {
        if (/Permission denied|you must be root/i.test(result.stderr)) throw new EnvironmentError(`${command} needs root (CAP_NET_ADMIN) to read the ruleset`);
        throw new BackendCommandError(`${command} -c`, result.exitCode, result.stderr);
      }
      return parseSave(result.stdout, family);
    }));
    for (const state of saved.flat()) out.set(tableKey(state.family, state.table), state);
    for (const family of families) {
      for (const table of iptTables) {
        const key = tableKey(family, table);
        if (!out.has(key)) out.set(key, { family, table, chains: [], rules: [], jumps: [] });
      }
    }
    return out;
  }

  /**
   * One restore per table and family, each atomic; tables already holding what is wanted are
   * skipped. When a later one fails, the tables already
   * loaded are put back as they were and checked; the error says whether that worked.
   */
  async load(ruleset: Ruleset): Promise<void> {
    const rendered = this.rulesOf(ruleset);
    const before = await this.readTables();
    // Tables the ruleset renders nothing into (mangle when no guard is needed) lose natctl's chains.
    const renderedKeys = new Set(rendered.map((r) => tableKey(r.family, r.table)));
    const emptied = [...before.values()].filter((state) => !renderedKeys.has(tableKey(state.family, state.table)) && (state.chains.length || state.jumps.length));
    const wanted: { family: Family; table: IptTable; rules: TableRules | null }[] = [
      ...rendered.map((rules) => ({ family: rules.family, table: rules.table, rules })),
      ...emptied.map((state) => ({ family: state.family, table: state.table, rules: null })),
    ];
    const loaded: string[] = [];
    for (const { family, table, rules } of wanted) {
      const key = tableKey(family, table);
      const current = before.get(key) ?? null;
      // A table that already holds exactly this is left alone (its counters keep counting).
      if (rules && current && !compareTable(rules, current).length) continue;
      const text = restoreText(rules, current);
      try {
        if (text !== null) await this.restore1(family, table, text, false);
        loaded.push(key);
      } catch (error) {
        if (!loaded.length) throw error;
        const problem = await this.putBack(before, loaded).then(() => undefined, (e: unknown) => (e as Error).message);
        const message = problem === undefined
          ? `${(error as Error).message}\n(${loaded.join(', ')} had been loaded already and were put back as they were, verified)`
          : `${(error as Error).message}\n(${loaded.join(', ')} had been loaded already; putting them back failed: ${problem})`;
        throw new BackendCommandError(error instanceof BackendCommandError ? error.command : 'iptables-legacy-restore', error instanceof BackendCommandError ? error.exitCode : undefined, message);
      }
    }
  }

  private async putBack(snapshot: Map<string, TableState>, keys: string[]): Promise<void> {
    const now = await this.readTables();
    for (const key of keys) {
      const state = snapshot.get(key);
      if (!state) continue;
      const text = restoreText(snapshotRules(state), now.get(key) ?? null);
      if (text !== null) await this.restore1(state.family, state.table, text, false);
    }
    const after = await this.readTables();
    for (const key of keys) {
      const want = snapshot.get(key);
      const have = after.get(key);
      if (want && have && normalizeTable(want).join('\n') !== normalizeTable(have).join('\n')) throw new Error(`${key} differs from what it was after putting it back`);
    }
  }

  /** status: the whole state is a few iptables-save listings, cheap at any size: read and verify. */
  readStatus(expected: () => StatusExpectation): Promise<StatusReading> {
    return readStatusByListing(this, expected);
  }

  async read(): Promise<LiveState | null> {
    const states = [...(await this.readTables()).values()];
    if (!states.some((s) => s.chains.length || s.jumps.length)) return null;
    const live = liveStateOf(states);
    this.states.set(live, states);
    return live;
  }

  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    const states = live ? (this.states.get(live) ?? (JSON.parse(live.raw) as TableState[])) : [];
    const byKey = new Map(states.map((s) => [tableKey(s.family, s.table), s]));
    const problems = this.rulesOf(ruleset).flatMap((rules) => compareTable(rules, byKey.get(tableKey(rules.family, rules.table))));
    // A table natctl renders nothing into must hold none of its chains either.
    const rendered = new Set(this.rulesOf(ruleset).map((r) => tableKey(r.family, r.table)));
    for (const state of states) {
      if (!rendered.has(tableKey(state.family, state.table)) && state.chains.length) problems.push(`${tableKey(state.family, state.table)}: holds natctl chains that are not declared`);
    }
    return problems;
  }

  async restore(live: LiveState | null): Promise<void> {
    const snapshot = live ? (this.states.get(live) ?? (JSON.parse(live.raw) as TableState[])) : [];
    const byKey = new Map(snapshot.map((s) => [tableKey(s.family, s.table), s]));
    const now = await this.readTables();
    for (const [key, current] of now) {
      const state = byKey.get(key);
      const text = restoreText(state ? snapshotRules(state) : null, current);
      if (text !== null) await this.restore1(current.family, current.table, text, false);
    }
  }

  /** Removes natctl's chains and the jumps into them; other rules stay as they are. */
  flush(): Promise<void> {
    return this.restore(null);
  }

  /** The checks that matter on an iptables-legacy host (docs/iptables.md), for `natctl doctor`. */
  async doctor(model?: Model): Promise<CheckResult[]> {
    // This backend's own checks, then the backend-neutral host checks (src/doctor).
    return [...(await iptablesDoctor(this.runner, model)), ...(await hostChecks(model ? { runner: this.runner, model } : { runner: this.runner }))];
  }

  recoveryHint(): string {
    return `Inspect it with: ${this.inspectCommand}`;
  }

  describe(): string {
    const where = this.runner.netns === undefined ? '' : ` via ip netns exec ${this.runner.netns}`;
    return `iptables-legacy: one iptables-legacy-restore --noflush per table and family${where} (xtables lock: --wait=${this.wait})`;
  }

  async version(): Promise<string> {
    const result = await this.runner.run(restoreCommand(4), ['--version']);
    if (result.exitCode !== 0) throw new EnvironmentError(`${restoreCommand(4)} --version failed: ${result.stderr.trim()}`);
    return result.stdout.trim();
  }
}
