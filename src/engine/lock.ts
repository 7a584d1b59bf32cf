// One apply at a time per state dir. The lock file holds the holder's pid and start time;
// a holder that died (even by SIGKILL) is detected and its lock taken over.
import { constants } from 'node:fs';
import { link, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LockError } from '../errors.js';

interface Holder {
  pid: number;
  /** Field 22 of /proc/PID/stat: tells a live holder from a recycled pid. */
  startTime: string | undefined;
}

async function startTimeOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

async function isAlive(holder: Holder): Promise<boolean> {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const now = await startTimeOf(holder.pid);
  return holder.startTime === undefined || now === undefined || now === holder.startTime;
}

async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

export interface Lock {
  release(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function acquireLock(dir: string, timeoutMs: number): Promise<Lock> {
  const path = join(dir, 'lock');
  const deadline = Date.now() + timeoutMs;
  const me: Holder = { pid: process.pid, startTime: await startTimeOf(process.pid) };
  for (;;) {
    try {
      const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await handle.writeFile(JSON.stringify(me));
        await handle.sync();
      } finally {
        await handle.close();
      }
      return { release: () => rm(path, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readHolder(path);
    if (holder && !(await isAlive(holder))) {
      // Move the dead holder's lock aside. Another waiter may have done so and taken a fresh
      // lock in between: if what we moved is not the dead holder's, put it back (link fails
      // rather than overwrite) and keep waiting.
      const aside = `${path}.stale-${process.pid}`;
      const moved = await rename(path, aside).then(() => true, () => false);
      if (moved) {
        const taken = await readHolder(aside);
        if (taken && taken.pid !== holder.pid) await link(aside, path).catch(() => undefined);
        await rm(aside, { force: true });
      }
      continue;
    }
    if (Date.now() >= deadline) {
      throw new LockError(`another natctl (pid ${holder?.pid ?? 'unknown'}) holds the lock ${path}; waited ${Math.round(timeoutMs / 1000)} s (raise --lock-timeout)`, holder?.pid);
    }
    await sleep(50 + Math.random() * 50);
  }
}
