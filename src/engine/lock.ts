// One apply at a time per state dir: an exclusive flock(2) on STATE/lock, held on an open
// file descriptor. The kernel drops the lock when the descriptor closes, so a holder that
// dies (even by SIGKILL, or a power loss) never blocks the next apply, whatever the file
// holds. The file's content (the holder's pid) is information for the exit-4 message only;
// an empty or truncated file means nothing. The file is never removed: unlinking a locked
// file lets a second process lock a new inode while the first still holds the old one.
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { LockError } from '../errors.js';

interface FsExt {
  flock(fd: number, flags: 'exnb' | 'un', callback: (error: NodeJS.ErrnoException | null) => void): void;
}
// fs-ext (node-gyp, built at npm ci) is CommonJS: load it through require.
const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

function tryFlock(fd: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    fsExt.flock(fd, 'exnb', (error) => {
      if (!error) resolve(true);
      else if (error.code === 'EAGAIN' || error.code === 'EWOULDBLOCK') resolve(false);
      else reject(error);
    });
  });
}

/** The pid the holder wrote, if it wrote one (information only). */
async function holderPid(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  try {
    const pid = (JSON.parse(text) as { pid?: unknown }).pid;
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
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
  // O_NOFOLLOW: a symlink planted as STATE/lock is refused, never followed.
  const handle: FileHandle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    for (;;) {
      if (await tryFlock(handle.fd)) break;
      if (Date.now() >= deadline) {
        const pid = await holderPid(path);
        throw new LockError(`another natctl (pid ${pid ?? 'unknown'}) holds the lock ${path}; waited ${Math.round(timeoutMs / 1000)} s (raise --lock-timeout)`, pid);
      }
      await sleep(50 + Math.random() * 50);
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  // Ours now: note who holds it, for the message of whoever waits.
  await handle.truncate(0);
  await handle.write(JSON.stringify({ pid: process.pid }), 0);
  return {
    release: async () => {
      await handle.truncate(0).catch(() => undefined);
      await handle.close(); // closing the descriptor releases the flock
    },
  };
}
