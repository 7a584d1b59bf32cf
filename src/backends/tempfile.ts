// Private temp files: nft cannot read a batch from a pipe when Node spawns it (docs/kernel-facts.md),
// so batches go through a 0600 file in a 0700 directory, removed on every path.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `parent` defaults to the system temp dir; the engine passes STATE_DIR/tmp so leftovers can be swept. */
export async function withTempFile<T>(name: string, content: string, use: (path: string) => Promise<T>, parent?: string): Promise<T> {
  let written: { dir: string; path: string };
  try {
    written = await writeTemp(name, content, parent);
  } catch (error) {
    // A full state dir must not keep natctl from restoring the previous ruleset: fall back to
    // the system temp dir (cleaned up below as always; only a SIGKILL would leave it there).
    if (parent === undefined || !isNoSpace(error)) throw error;
    written = await writeTemp(name, content, undefined);
  }
  try {
    return await use(written.path);
  } finally {
    await rm(written.dir, { recursive: true, force: true });
  }
}

const isNoSpace = (error: unknown): boolean => ['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException).code ?? '');

async function writeTemp(name: string, content: string, parent: string | undefined): Promise<{ dir: string; path: string }> {
  if (parent !== undefined) await mkdir(parent, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(parent ?? tmpdir(), 'natctl-'));
  const path = join(dir, name);
  try {
    await writeFile(path, content, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return { dir, path };
}

/**
 * Removes what a killed process (SIGKILL runs no cleanup) left in `parent`. Call only while
 * holding the apply lock: every writer of `parent` holds it too.
 */
export async function sweepTempFiles(parent: string): Promise<number> {
  const names = await readdir(parent).catch(() => [] as string[]);
  const stale = names.filter((n) => n.startsWith('natctl-'));
  await Promise.all(stale.map((n) => rm(join(parent, n), { recursive: true, force: true })));
  return stale.length;
}
