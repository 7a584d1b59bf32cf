// Generations: every successful apply is recorded in the state dir, atomically (temp file,
// fsync, rename), directory 0700 and files 0600, so history and rollback survive crashes.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackendName } from '../backends/backend.js';
import type { Config } from '../config/schema.js';
import { EnvironmentError } from '../errors.js';

export interface Generation {
  generation: number;
  time: string;
  backend: BackendName;
  /** sha256 of the rendered ruleset text. */
  hash: string;
  /** apply: a config was applied; flush: natctl's rules were removed. */
  kind: 'apply' | 'flush';
  config: Config;
  /** Exactly what was loaded. */
  ruleset: string;
  /** The kernel's normalized listing right after the apply, for drift and no-op detection. */
  live: string;
}

export const defaultStateDir = '/var/lib/natctl';
export const defaultKeep = 10;

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

const fileName = (generation: number): string => `gen-${String(generation).padStart(8, '0')}.json`;

async function writeAtomic(path: string, content: string): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class StateStore {
  constructor(readonly dir: string, private readonly keep = defaultKeep) {}

  /** Creates the directory 0700 if needed; refuses one that others may write (they could plant a generation). */
  async ensure(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const info = await stat(this.dir);
    if (!info.isDirectory()) throw new EnvironmentError(`state dir ${this.dir} is not a directory`);
    if (info.mode & 0o022) throw new EnvironmentError(`state dir ${this.dir} is writable by group or others (mode ${(info.mode & 0o777).toString(8)}); run: chmod 700 ${this.dir}`);
    if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
      throw new EnvironmentError(`state dir ${this.dir} belongs to uid ${info.uid}, not to this user (uid ${process.getuid()})`);
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

  async get(generation: number): Promise<Generation | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, fileName(generation)), 'utf8')) as Generation;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new EnvironmentError(`generation ${generation} in ${this.dir} is unreadable: ${(error as Error).message}`);
    }
  }

  async latest(): Promise<Generation | undefined> {
    const numbers = await this.numbers();
    const last = numbers[numbers.length - 1];
    return last === undefined ? undefined : this.get(last);
  }

  async list(): Promise<Generation[]> {
    const out: Generation[] = [];
    for (const n of await this.numbers()) {
      const generation = await this.get(n);
      if (generation) out.push(generation);
    }
    return out;
  }

  async record(entry: Omit<Generation, 'generation' | 'time'>): Promise<Generation> {
    await this.ensure();
    const numbers = await this.numbers();
    const generation: Generation = { generation: (numbers[numbers.length - 1] ?? 0) + 1, time: new Date().toISOString(), ...entry };
    await writeAtomic(join(this.dir, fileName(generation.generation)), `${JSON.stringify(generation, null, 2)}\n`);
    await syncDir(this.dir);
    const stale = [...numbers, generation.generation].slice(0, -this.keep);
    await Promise.all(stale.map((n) => rm(join(this.dir, fileName(n)), { force: true })));
    return generation;
  }
}
