// A Runner that starts its command inside a named network namespace without `ip netns exec`:
// the child is forked while the calling thread is inside /run/netns/NAME (the addon's
// withNetns, src/host/netns.ts), and a child keeps the namespace of the thread that forked
// it. Node forks inside spawn() itself, synchronously, so the thread is back in its own
// namespace before spawn returns. Used by the addon transport for the calls it runs out of
// process (transport-native.ts).
import { spawn } from 'node:child_process';
import { EnvironmentError } from '../../errors.js';
import { inNetns } from '../../host/netns.js';
import type { Runner, RunResult } from '../exec.js';

export function netnsSpawnRunner(netns: string | undefined): Runner {
  return {
    run(command, args, options = {}): Promise<RunResult> {
      return new Promise((resolve, reject) => {
        let child;
        try {
          child = inNetns(netns, () => spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' }, timeout: options.timeoutMs ?? 60_000 }));
        } catch (error) {
          reject(new EnvironmentError(`cannot run ${command}${netns === undefined ? '' : ` in netns ${netns}`}: ${(error as Error).message}`));
          return;
        }
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
        child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
        child.on('error', (error: NodeJS.ErrnoException) => {
          reject(new EnvironmentError(error.code === 'ENOENT' ? `${command} not found; install it or point NATCTL_NFT at it` : `cannot run ${command}: ${error.message}`));
        });
        child.on('close', (code, signal) => {
          const stderr = Buffer.concat(err).toString();
          // A timeout kills the child with SIGTERM, as the runner of exec.ts reports it: exit code 124.
          resolve({ exitCode: code ?? (signal === 'SIGTERM' ? 124 : 128), stdout: Buffer.concat(out).toString(), stderr: code === null && signal === 'SIGTERM' ? `${command} timed out` : stderr });
        });
      });
    },
  };
}
