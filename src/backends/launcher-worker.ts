// The launcher's child (launcher.ts): a small Node process that spawns commands for a big one.
// One JSON request a line on stdin, one JSON answer a line on stdout, in any order (by id).
// No imports beyond Node's own: it starts in tens of milliseconds and stays small, so each
// fork it makes copies little (docs/performance.md, "Spawning from a big process").
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

interface Request {
  id: number;
  file: string;
  args: string[];
  timeoutMs: number;
  /** The parent's environment when it sent the command. */
  env: Record<string, string>;
  cwd: string;
}

const reply = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value)}\n`);

function run({ id, file, args, timeoutMs, env, cwd }: Request): void {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let timedOut = false;
  let done = false;
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env, cwd });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  const finish = (answer: Record<string, unknown>): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    reply({ id, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), ...answer });
  };
  child.on('error', (error: NodeJS.ErrnoException) => finish({ error: { code: error.code ?? '', message: error.message } }));
  child.on('close', (code, signal) => finish(timedOut ? { timedOut: true } : code === null ? { error: { code: '', message: `killed by ${signal ?? 'a signal'}` } } : { exitCode: code }));
}

// stdin closes when the parent exits: then so does this process.
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    run(JSON.parse(line) as Request);
  } catch (error) {
    reply({ id: -1, error: { code: '', message: (error as Error).message } });
  }
}
