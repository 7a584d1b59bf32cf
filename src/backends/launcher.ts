// Spawning from a big process (docs/performance.md, "Spawning from a big process"): Node forks
// to spawn, and a fork costs in proportion to the parent's memory (here: 9 ms for nft from a
// 60 MB process, 21 ms from a 320 MB one, such as an agent holding 50,000 mappings). A process
// that keeps spawning while big starts one small helper (launcher-worker.ts) in the background
// and hands it its commands from then on; until it is ready, and whenever it fails, commands
// are spawned directly. A one-shot CLI run rarely reaches it: the helper starts only at the
// third command spawned while big, and no command ever waits for it.
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** What the helper answers: an exit code, or why the command could not run (or was killed). */
export interface Launched {
  stdout: string;
  stderr: string;
  exitCode?: number;
  timedOut?: boolean;
  error?: { code: string; message: string };
}

/** From this resident set size a process counts as big. */
export const bigProcessBytes = 128 * 1024 * 1024;
/** Commands spawned while big before the helper is started. */
const startAfter = 2;

const here = dirname(fileURLToPath(import.meta.url));
// Loaded from src/ (tests run TypeScript directly), the helper still runs from the build.
const workerScript = import.meta.url.endsWith('.ts') ? join(here, '../../dist/backends/launcher-worker.js') : join(here, 'launcher-worker.js');

interface Helper {
  child: ChildProcessByStdio<Writable, Readable, null>;
  ready: boolean;
  pending: Map<number, (answer: Launched) => void>;
}

let helper: Helper | undefined;
let failed = false;
let bigSpawns = 0;
let nextId = 1;

/** Keeps the event loop alive only while a command is out (an idle helper never holds the process open). */
function hold(h: Helper, on: boolean): void {
  for (const handle of [h.child, h.child.stdin, h.child.stdout] as { ref?: () => void; unref?: () => void }[]) (on ? handle.ref : handle.unref)?.call(handle);
}

function stop(h: Helper): void {
  if (helper === h) helper = undefined;
  failed = true;
  // A command in flight may have run (a batch committed): never run it again, answer that it failed.
  const message = 'the spawning helper exited before the command finished; it may or may not have run';
  for (const resolve of h.pending.values()) resolve({ stdout: '', stderr: message, error: { code: 'EHELPER', message } });
  h.pending.clear();
  h.child.kill();
}

function start(): void {
  let child: ChildProcessByStdio<Writable, Readable, null>;
  try {
    // No stderr pipe: an open one would keep this process alive (the others are unref'd when idle).
    child = spawn(process.execPath, [workerScript], { stdio: ['pipe', 'pipe', 'ignore'] });
  } catch {
    failed = true;
    return;
  }
  const h: Helper = { child, ready: false, pending: new Map() };
  helper = h;
  child.on('error', () => stop(h));
  child.on('exit', () => stop(h));
  child.stdin.on('error', () => stop(h));
  child.on('spawn', () => {
    h.ready = true;
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    let answer: Launched & { id: number };
    try {
      answer = JSON.parse(line) as Launched & { id: number };
    } catch {
      stop(h);
      return;
    }
    const resolve = h.pending.get(answer.id);
    if (!resolve) return;
    h.pending.delete(answer.id);
    if (!h.pending.size) hold(h, false);
    resolve(answer);
  });
  hold(h, false);
}

/**
 * Runs `file args` through the helper when this process is big and the helper is up;
 * undefined: spawn it directly (small process, helper not ready yet, disabled, or failed). A
 * command the helper took is never spawned again (a helper that dies answers it as failed).
 */
export function launch(file: string, args: string[], timeoutMs: number): Promise<Launched> | undefined {
  // NATCTL_LAUNCHER=0: never; =1: whatever the size, from the first command (tests).
  const mode = process.env.NATCTL_LAUNCHER;
  if (failed || mode === '0') return undefined;
  if (!helper) {
    if (mode !== '1' && process.memoryUsage.rss() < bigProcessBytes) return undefined;
    if (mode === '1' || ++bigSpawns > startAfter) start();
    return undefined;
  }
  const h = helper;
  if (!h.ready) return undefined;
  const id = nextId++;
  return new Promise((resolve) => {
    h.pending.set(id, resolve);
    hold(h, true);
    // This process's directory and environment as they are now (execa's defaults), in the C locale.
    h.child.stdin.write(`${JSON.stringify({ id, file, args, timeoutMs, cwd: process.cwd(), env: { ...process.env, LC_ALL: 'C' } })}\n`);
  });
}

/** The helper's pid while it runs (tests). */
export function helperPid(): number | undefined {
  return helper?.child.pid;
}
