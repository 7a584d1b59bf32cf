// Generations: every successful apply is recorded in the state dir, atomically (temp file,
// fsync, rename), directories 0700 and files 0600, so history and rollback survive crashes.
// A generation that cannot be read (a torn disk, a hand edit) is skipped and reported, never
// a reason to block history, plan, apply or rollback (docs/operations.md).
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { BackendName } from '../backends/backend.js';
import type { Config } from '../config/schema.js';
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
}

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
  if (g.config === null || typeof g.config !== 'object') return 'config is missing';
  return undefined;
}

type ReadResult = { generation: Generation } | { corrupt: CorruptGeneration } | undefined;

export class StateStore {
  /**
   * `dir` is where generations go; `root` is the state dir it lies in (dir itself, or
   * ROOT/netns/NAME). Every directory from root down to dir is checked (see ensure).
   */
  constructor(readonly dir: string, readonly root: string = dir, private readonly keep = defaultKeep) {}

  /**
   * Creates the directories 0700 if needed and refuses, from the state dir down, any
   * component that is a symlink, not a directory, owned by another user, or writable by
   * group or others: any of those lets someone else plant or redirect a generation.
   */
  async ensure(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const rest = relative(this.root, this.dir);
    if (rest.startsWith('..')) throw new EnvironmentError(`internal: state dir ${this.dir} is not inside ${this.root}`);
    const parts = rest === '' ? [] : rest.split(sep);
    let path = this.root;
    await checkComponent(path);
    for (const part of parts) {
      path = join(path, part);
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

  private async read(generation: number): Promise<ReadResult> {
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
    return problem ? { corrupt: { generation, file, reason: problem } } : { generation: value as Generation };
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
    for (const n of numbers.reverse()) {
      const result = await this.read(n);
      if (result && 'corrupt' in result) corrupt.push(result.corrupt);
      else if (result) return { generation: result.generation, corrupt };
    }
    return { generation: undefined, corrupt };
  }

  /** Every generation, oldest first, and the files that could not be read. */
  async scan(): Promise<{ generations: Generation[]; corrupt: CorruptGeneration[] }> {
    const generations: Generation[] = [];
    const corrupt: CorruptGeneration[] = [];
    for (const n of await this.numbers()) {
      const result = await this.read(n);
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

  async record(entry: Omit<Generation, 'generation' | 'time'>): Promise<Generation> {
    await this.ensure();
    const numbers = await this.numbers();
    const generation: Generation = { generation: (numbers[numbers.length - 1] ?? 0) + 1, time: new Date().toISOString(), ...entry };
    // Compact: at 50,000 mappings indentation alone is megabytes per generation (docs/operations.md).
    await writeAtomic(join(this.dir, fileName(generation.generation)), `${JSON.stringify(generation)}\n`);
    await syncDir(this.dir);
    const stale = [...numbers, generation.generation].slice(0, -this.keep);
    await Promise.all(stale.map((n) => rm(join(this.dir, fileName(n)), { force: true })));
    return generation;
  }
}

async function checkComponent(path: string): Promise<void> {
  const info = await lstat(path);
  if (info.isSymbolicLink()) throw new EnvironmentError(`state dir component ${path} is a symlink; natctl does not follow symlinks in its state dir (replace it with a directory, mode 700)`);
  if (!info.isDirectory()) throw new EnvironmentError(`state dir component ${path} is not a directory`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  if (info.uid !== uid && info.uid !== 0) throw new EnvironmentError(`state dir component ${path} belongs to uid ${info.uid}, not to this user (uid ${uid}) or root`);
  if (info.mode & 0o022) throw new EnvironmentError(`state dir component ${path} is writable by group or others (mode ${(info.mode & 0o777).toString(8)}); run: chmod 700 ${path}`);
}
