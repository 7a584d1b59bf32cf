// Generations: every successful apply is recorded in the state dir, atomically (temp file,
// fsync, rename), directories 0700 and files 0600, so history and rollback survive crashes.
// A generation that cannot be read (a torn disk, a hand edit) is skipped and reported, never
// a reason to block history, plan, apply or rollback (docs/operations.md).
import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { BackendName } from '../backends/backend.js';
import type { Config, MappingConfig } from '../config/schema.js';
import { EnvironmentError, UsageError } from '../errors.js';

export interface Generation {
  generation: number;
  time: string;
  backend: BackendName;
  /**
   * sha256 of what was applied: natctl's version, the backend and the config (configHash in
   * src/engine/controller.ts). Generations written before issue 8: sha256 of the rendered ruleset.
   */
  hash: string;
  /**
   * The marker the ruleset carries in the kernel (the first 16 hex digits of `hash`): the backend's
   * `holds(stamp)` says without a listing whether the kernel still holds this generation.
   * Absent in generations written before issue 8 (the next apply is then a full one).
   */
  stamp?: string;
  /** apply: a config was applied; flush: natctl's rules were removed. */
  kind: 'apply' | 'flush';
  /** What rollback re-applies and what drift is measured against (render of its model). */
  config: Config;
  /** Exactly what was loaded. Only in generations written before issue 8 (read, never written). */
  ruleset?: string;
  /**
   * The kernel's normalized listing right after a full apply, kept only while it is small
   * (maxKeptListing): status then shows drift as lines. Bounded, so a generation stays the size
   * of its config (docs/operations.md).
   */
  live?: string;
  /**
   * Set when the file records only mapping edits against an earlier generation (written by the
   * agent API, docs/operations.md "What a generation holds"): how many such files lead back to
   * the last whole one. `config` is always the whole config once read.
   */
  depth?: number;
}

/**
 * What a generation file written by the agent API holds instead of the whole config: the
 * config without its mappings, and the mapping edits against its parent's mappings (positions
 * in the parent's list). The result: the parent's mappings with `replaced` in place, `removed`
 * left out, `appended` last (the order the agent API builds, src/engine/controller.ts).
 */
export interface MappingEdits {
  head: Omit<Config, 'mappings'>;
  removed: number[];
  replaced: [number, MappingConfig][];
  appended: MappingConfig[];
}

/** The whole config `edits` make of `parent` (see MappingEdits). */
export function applyEdits(parent: Config, edits: MappingEdits): Config {
  const removed = new Set(edits.removed);
  const replaced = new Map(edits.replaced);
  const mappings: MappingConfig[] = [];
  (parent.mappings ?? []).forEach((mapping, i) => {
    if (!removed.has(i)) mappings.push(replaced.get(i) ?? mapping);
  });
  mappings.push(...edits.appended);
  return { ...edits.head, mappings } as Config;
}

/** A chain of edit files longer than this is cut by writing the whole config again. */
export const maxEditDepth = 32;

/** A listing bigger than this is not kept in a generation (a few hundred mappings fit). */
export const maxKeptListing = 256 * 1024;

/** A generation file that could not be read or is not a generation; skipped everywhere. */
export interface CorruptGeneration {
  generation: number;
  file: string;
  reason: string;
}

export const defaultStateDir = '/var/lib/natctl';
export const defaultKeep = 10;

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

const fileName = (generation: number): string => `gen-${String(generation).padStart(8, '0')}.json`;
/** What writeAtomic leaves behind when killed (or out of space) between write and rename. */
const tempPattern = /^gen-\d{8}\.json\.tmp-\d+$/;

async function writeAtomic(path: string, content: string): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  try {
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    // ENOSPC, EIO...: leave no half-written file behind.
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function problemOf(value: unknown, number: number): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const g = value as Record<string, unknown>;
  if (g.generation !== number) return `its number is ${JSON.stringify(g.generation)}, not ${number}`;
  if (g.kind !== 'apply' && g.kind !== 'flush') return `unknown kind ${JSON.stringify(g.kind)}`;
  for (const key of ['time', 'backend', 'hash'] as const) if (typeof g[key] !== 'string') return `${key} is missing or not a string`;
  for (const key of ['stamp', 'ruleset', 'live'] as const) if (g[key] !== undefined && typeof g[key] !== 'string') return `${key} is not a string`;
  if (g.edits !== undefined) {
    if (g.kind !== 'apply') return 'edits in a generation that is not an apply';
    for (const key of ['parent', 'base', 'depth'] as const) if (!Number.isInteger(g[key]) || (g[key] as number) < 0) return `${key} is missing or not a count`;
    if ((g.parent as number) >= number || (g.base as number) > (g.parent as number)) return `its parent ${String(g.parent)} or base ${String(g.base)} does not come before it`;
    const e = g.edits as Record<string, unknown> | null;
    if (e === null || typeof e !== 'object' || typeof e.head !== 'object' || e.head === null) return 'edits.head is missing';
    if (!Array.isArray(e.removed) || !e.removed.every((i) => Number.isInteger(i))) return 'edits.removed is not a list of positions';
    if (!Array.isArray(e.replaced) || !e.replaced.every((r) => Array.isArray(r) && r.length === 2 && Number.isInteger(r[0]) && typeof r[1] === 'object' && r[1] !== null)) return 'edits.replaced is not a list of [position, mapping]';
    if (!Array.isArray(e.appended) || !e.appended.every((m) => typeof m === 'object' && m !== null)) return 'edits.appended is not a list of mappings';
    return undefined;
  }
  if (g.config === null || typeof g.config !== 'object') return 'config is missing';
  return undefined;
}

/**
 * What the caller of record already knows under the apply lock (nobody else writes then): the
 * directories were checked (ensure), and the generation numbers listed.
 */
export interface RecordContext {
  ensured?: boolean;
  numbers?: readonly number[];
}

/** A generation file as written: a whole config, or edits against `parent` (MappingEdits). */
type StoredGeneration = Omit<Generation, 'config'> & ({ config: Config } | { parent: number; base: number; depth: number; edits: MappingEdits });

type ReadResult = { generation: Generation } | { corrupt: CorruptGeneration } | undefined;

/** Reads of one scan: each file parsed (and each chain resolved) once. */
type Memo = Map<number, ReadResult>;

export class StateStore {
  /**
   * `dir` is where generations go; `root` is the state dir it lies in (dir itself, or
   * ROOT/netns/NAME). Every directory from root down to dir is checked (see ensure).
   */
  constructor(readonly dir: string, readonly root: string = dir, private readonly keep = defaultKeep) {}

  /**
   * The base (baseOf) of generation files this store wrote or read, by number: a file is never
   * rewritten under its number while it exists, and an entry whose file is gone from a listing
   * is dropped (record), so pruning does not open every kept file on each apply.
   */
  private readonly bases = new Map<number, number>();

  /**
   * Creates the directories 0700 if needed and refuses, from the state dir down, any
   * component that is a symlink, not a directory, owned by another user, or writable by
   * group or others: any of those lets someone else plant or redirect a generation.
   */
  async ensure(): Promise<void> {
    const rest = relative(this.root, this.dir);
    if (rest.startsWith('..')) throw new EnvironmentError(`internal: state dir ${this.dir} is not inside ${this.root}`);
    const parts = rest === '' ? [] : rest.split(sep);
    const paths = parts.reduce((all, part) => [...all, join(all[all.length - 1]!, part)], [this.root]);
    // Usually every directory is there: one lstat each, side by side (an agent's apply pays this).
    const infos = await Promise.all(paths.map((path) => lstat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    })));
    if (infos.every((info) => info !== undefined)) {
      paths.forEach((path, i) => checkInfo(path, infos[i]!));
      return;
    }
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await checkComponent(this.root);
    for (const path of paths.slice(1)) {
      await mkdir(path, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      await checkComponent(path);
    }
  }

  async numbers(): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names.flatMap((n) => /^gen-(\d{8})\.json$/.exec(n)?.[1] ?? []).map(Number).sort((a, b) => a - b);
  }

  private async read(generation: number, memo: Memo = new Map()): Promise<ReadResult> {
    if (memo.has(generation)) return memo.get(generation);
    const result = await this.readFile(generation, memo);
    memo.set(generation, result);
    return result;
  }

  private async readFile(generation: number, memo: Memo): Promise<ReadResult> {
    const file = join(this.dir, fileName(generation));
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      return { corrupt: { generation, file, reason: (error as Error).message } };
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return { corrupt: { generation, file, reason: `not valid JSON (${(error as Error).message})` } };
    }
    const problem = problemOf(value, generation);
    if (problem) return { corrupt: { generation, file, reason: problem } };
    const stored = value as StoredGeneration;
    if (!('edits' in stored)) return { generation: stored };
    // Edits: the whole config is the parent's with these edits (a broken link breaks the chain).
    const parent = await this.read(stored.parent, memo);
    if (!parent || 'corrupt' in parent || parent.generation.kind !== 'apply') {
      return { corrupt: { generation, file, reason: `it records edits against generation ${stored.parent}, which ${parent && 'corrupt' in parent ? 'is unreadable' : parent ? 'is not an apply' : 'is gone'}` } };
    }
    const { edits, parent: _parent, base: _base, ...rest } = stored;
    return { generation: { ...rest, config: applyEdits(parent.generation.config, edits) } };
  }

  /** Identifies the file of one generation as written (number, inode, size, mtime): a cache key; undefined when absent. */
  async fileKey(generation: number): Promise<string | undefined> {
    const info = await lstat(join(this.dir, fileName(generation))).catch(() => undefined);
    return info ? `${generation}:${info.ino}:${info.size}:${info.mtimeMs}` : undefined;
  }

  /** One generation; undefined when there is none of that number; UsageError when it is corrupt. */
  async get(generation: number): Promise<Generation | undefined> {
    const result = await this.read(generation);
    if (result && 'corrupt' in result) throw new UsageError(`generation ${generation} (${result.corrupt.file}) is unreadable: ${result.corrupt.reason}; pick another one (see natctl history)`);
    return result?.generation;
  }

  /** The newest readable generation, and the corrupt ones newer than it. */
  async latest(): Promise<{ generation: Generation | undefined; corrupt: CorruptGeneration[] }> {
    const numbers = await this.numbers();
    const corrupt: CorruptGeneration[] = [];
    const memo: Memo = new Map();
    for (const n of numbers.reverse()) {
      const result = await this.read(n, memo);
      if (result && 'corrupt' in result) corrupt.push(result.corrupt);
      else if (result) return { generation: result.generation, corrupt };
    }
    return { generation: undefined, corrupt };
  }

  /** Every generation, oldest first, and the files that could not be read. */
  async scan(): Promise<{ generations: Generation[]; corrupt: CorruptGeneration[] }> {
    const generations: Generation[] = [];
    const corrupt: CorruptGeneration[] = [];
    const memo: Memo = new Map();
    for (const n of await this.numbers()) {
      const result = await this.read(n, memo);
      if (result && 'corrupt' in result) corrupt.push(result.corrupt);
      else if (result) generations.push(result.generation);
    }
    return { generations, corrupt };
  }

  async list(): Promise<Generation[]> {
    return (await this.scan()).generations;
  }

  /**
   * Removes generation temp files a killed or failed writer left behind. Call only while
   * holding the apply lock: every writer holds it too.
   */
  async sweepTemp(): Promise<number> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const stale = names.filter((n) => tempPattern.test(n));
    await Promise.all(stale.map((n) => rm(join(this.dir, n), { force: true })));
    return stale.length;
  }

  /**
   * Writes the next generation. With `edits` against `parent` (the newest generation, as read:
   * an apply), only the edits are written, unless the chain of edit files behind the parent is
   * already maxEditDepth long: then the whole config (bounded reads, bounded loss if a file of
   * the chain is lost). Returns the generation with its whole config either way.
   */
  async record(entry: Omit<Generation, 'generation' | 'time'>, against?: { parent: Generation; edits: MappingEdits }, known: RecordContext = {}): Promise<Generation> {
    if (!known.ensured) await this.ensure();
    const numbers = known.numbers ?? (await this.numbers());
    const generation: Generation = { generation: (numbers[numbers.length - 1] ?? 0) + 1, time: new Date().toISOString(), ...entry };
    const parentDepth = against?.parent.depth ?? 0;
    let stored: StoredGeneration = generation;
    if (against && against.parent.kind === 'apply' && parentDepth < maxEditDepth) {
      const { config: _config, live: _live, ...rest } = generation;
      const base = parentDepth === 0 ? against.parent.generation : await this.baseOf(against.parent.generation);
      generation.depth = parentDepth + 1;
      delete generation.live;
      // Field order matters: baseOf reads `base` from the head of the file.
      stored = { ...rest, base, parent: against.parent.generation, depth: generation.depth, edits: against.edits };
    }
    // Compact: at 50,000 mappings indentation alone is megabytes per generation (docs/operations.md).
    await writeAtomic(join(this.dir, fileName(generation.generation)), `${JSON.stringify(stored)}\n`);
    await syncDir(this.dir);
    const present = new Set(numbers);
    for (const n of this.bases.keys()) if (!present.has(n)) this.bases.delete(n);
    this.bases.set(generation.generation, 'base' in stored ? stored.base : generation.generation);
    // The last `keep` generations stay, and the files their edit chains lead back to.
    const all = [...numbers, generation.generation];
    const kept = all.slice(-this.keep);
    const oldestKept = kept[0] ?? generation.generation;
    const needed = Math.min(oldestKept, ...(await Promise.all(kept.map((n) => this.baseOf(n)))));
    const stale = all.filter((n) => n < needed);
    await Promise.all(stale.map((n) => rm(join(this.dir, fileName(n)), { force: true })));
    return generation;
  }

  /**
   * The whole generation an edit file's chain starts from (itself for a whole one), from the
   * head of its file: no whole config is parsed to prune.
   */
  private async baseOf(generation: number): Promise<number> {
    const known = this.bases.get(generation);
    if (known !== undefined) return known;
    const base = await this.readBase(generation);
    if (base === undefined) return generation;
    this.bases.set(generation, base);
    return base;
  }

  /** undefined when the file cannot be read now (not remembered). */
  private async readBase(generation: number): Promise<number | undefined> {
    let head = '';
    try {
      const handle = await open(join(this.dir, fileName(generation)), constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const buffer = Buffer.alloc(512);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        head = buffer.subarray(0, bytesRead).toString('utf8');
      } finally {
        await handle.close();
      }
    } catch {
      return undefined;
    }
    const match = /"base":(\d+),"parent":/.exec(head);
    return match ? Number(match[1]) : generation;
  }
}

async function checkComponent(path: string): Promise<void> {
  checkInfo(path, await lstat(path));
}

function checkInfo(path: string, info: Stats): void {
  if (info.isSymbolicLink()) throw new EnvironmentError(`state dir component ${path} is a symlink; natctl does not follow symlinks in its state dir (replace it with a directory, mode 700)`);
  if (!info.isDirectory()) throw new EnvironmentError(`state dir component ${path} is not a directory`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  if (info.uid !== uid && info.uid !== 0) throw new EnvironmentError(`state dir component ${path} belongs to uid ${info.uid}, not to this user (uid ${uid}) or root`);
  if (info.mode & 0o022) throw new EnvironmentError(`state dir component ${path} is writable by group or others (mode ${(info.mode & 0o777).toString(8)}); run: chmod 700 ${path}`);
}
