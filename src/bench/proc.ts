// Running what the bench measures: every child in its own process group, so a timed-out
// operation is ended with everything it started (natctl's nft, `ip netns exec`) and nothing
// else; the PIDs of live children are kept so cleanup on a signal can end them too.
import { readFileSync } from 'node:fs';
import { type ResultPromise, execa } from 'execa';

const live = new Set<number>();

export type RunOutcome =
  | { kind: 'ok'; ms: number; stdout: string; stderr: string }
  | { kind: 'failed'; ms: number; exitCode: number | undefined; message: string }
  /** peakRssKiB: the child's VmHWM just before it was killed (a lower bound of its peak), when asked for. */
  | { kind: 'timeout'; ms: number; peakRssKiB?: number };

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The peak resident set of a live process so far (VmHWM, KiB), from /proc. */
export function vmHwmKiB(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `file args` with a hard time limit; `ms` is the wall time from spawn to exit. */
export async function runTimed(file: string, args: string[], options: { timeoutMs: number; env?: Record<string, string>; rssOnTimeout?: boolean }): Promise<RunOutcome> {
  const start = process.hrtime.bigint();
  const child = execa(file, args, { reject: false, detached: true, stdin: 'ignore', env: options.env ?? {}, cleanup: true });
  const pid = child.pid;
  if (pid !== undefined) live.add(pid);
  let timedOut = false;
  let peakRssKiB: number | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    if (pid === undefined) return;
    if (options.rssOnTimeout) peakRssKiB = vmHwmKiB(pid);
    killGroup(pid);
  }, options.timeoutMs);
  try {
    const result = await child;
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (timedOut) return peakRssKiB === undefined ? { kind: 'timeout', ms } : { kind: 'timeout', ms, peakRssKiB };
    if (result.exitCode === 0) return { kind: 'ok', ms, stdout: String(result.stdout), stderr: String(result.stderr) };
    const stderr = String(result.stderr ?? '').trim();
    return { kind: 'failed', ms, exitCode: result.exitCode, message: (stderr || String(result.message)).split('\n').slice(0, 3).join(' / ') };
  } finally {
    clearTimeout(timer);
    if (pid !== undefined) live.delete(pid);
  }
}

/** A long-running child (servers, the library worker): tracked until killChild. */
export function startChild(file: string, args: string[], env: Record<string, string> = {}): ResultPromise<{ reject: false; detached: true; env: Record<string, string>; stdin: 'pipe' }> {
  const child = execa(file, args, { reject: false, detached: true, env, stdin: 'pipe' });
  if (child.pid !== undefined) live.add(child.pid);
  return child;
}

export function killChild(child: { pid?: number | undefined }): void {
  if (child.pid === undefined) return;
  killGroup(child.pid);
  live.delete(child.pid);
}

/** Ends every child still running (cleanup on a signal or at the end). */
export function killAll(): void {
  for (const pid of live) killGroup(pid);
  live.clear();
}
