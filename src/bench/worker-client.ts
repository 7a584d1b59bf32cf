// The bench's end of library-worker.ts: one command at a time, each with a time limit. A
// command over its limit ends the worker (its process group); later commands get "died".
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Transport } from './options.js';
import { killChild, startChild } from './proc.js';
import type { WorkerCommand, WorkerReply } from './library-worker.js';

const workerScript = join(dirname(fileURLToPath(import.meta.url)), 'library-worker.js');

export type WorkerOutcome = { kind: 'reply'; reply: WorkerReply } | { kind: 'timeout' } | { kind: 'died'; message: string };

export const transportEnv = (transport: Transport): Record<string, string> => ({ NATCTL_NATIVE: transport === 'addon' ? '1' : '0' });

export class LibraryWorker {
  private readonly child;
  private readonly pending: ((line: string | undefined) => void)[] = [];
  private stderr = '';
  private exited = false;

  constructor(netns: string, stateDir: string, transport: Transport) {
    this.child = startChild(process.execPath, [workerScript, netns, stateDir], transportEnv(transport));
    this.child.stderr?.on('data', (chunk: Buffer) => void (this.stderr = (this.stderr + chunk.toString()).slice(-2000)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.pending.shift()?.(line));
    void this.child.then(() => {
      this.exited = true;
      for (const resolve of this.pending.splice(0)) resolve(undefined);
    });
  }

  async send(command: WorkerCommand, timeoutMs: number): Promise<WorkerOutcome> {
    if (this.exited) return { kind: 'died', message: `library worker exited: ${this.stderr.trim().split('\n').pop() ?? ''}` };
    let timer: NodeJS.Timeout | undefined;
    const line = await new Promise<string | undefined | 'timeout'>((resolve) => {
      this.pending.push(resolve);
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      this.child.stdin?.write(`${JSON.stringify(command)}\n`);
    });
    clearTimeout(timer);
    if (line === 'timeout') {
      this.stop();
      return { kind: 'timeout' };
    }
    if (line === undefined) return { kind: 'died', message: `library worker exited: ${this.stderr.trim().split('\n').pop() ?? ''}` };
    return { kind: 'reply', reply: JSON.parse(line) as WorkerReply };
  }

  stop(): void {
    this.exited = true;
    this.pending.splice(0);
    killChild(this.child);
  }
}
