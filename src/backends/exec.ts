// The exec seam: every external command natctl runs goes through here, as an argv array
// (never a shell), optionally inside a named network namespace.
import { existsSync } from 'node:fs';
import { EnvironmentError } from '../errors.js';
import { launch } from './launcher.js';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface Runner {
  /** Runs `command args...`; resolves with its output whatever its exit code. Rejects only when it could not start. */
  run(command: string, args: string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** The namespace commands run in, or undefined for the caller's own. */
  readonly netns?: string;
}

/** Kernel rulesets, namespaces and interfaces need root (CAP_NET_ADMIN). */
export function isRoot(): boolean {
  return typeof process.getuid !== 'function' || process.getuid() === 0;
}

export const netnsNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export function createRunner(netns?: string): Runner {
  if (netns !== undefined) {
    if (!netnsNamePattern.test(netns)) throw new EnvironmentError(`--netns ${JSON.stringify(netns)} is not a network namespace name`);
    if (!existsSync(netnsPath(netns))) throw new EnvironmentError(`network namespace ${JSON.stringify(netns)} does not exist (no ${netnsPath(netns)}); create it with: ip netns add ${netns}`);
  }
  return {
    netns,
    async run(command, args, options = {}): Promise<RunResult> {
      const [file, argv] = netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
      try {
        const timeout = options.timeoutMs ?? 60_000;
        // A big process (an agent holding 50,000 mappings) hands its commands to a small helper: a fork costs its size (launcher.ts).
        const launched = await launch(file, argv, timeout);
        let result: { exitCode?: number; failed: boolean; timedOut: boolean; code?: string; message: string; stdout: string; stderr: string };
        if (launched) {
          result = { ...launched, failed: launched.exitCode === undefined, timedOut: launched.timedOut === true, message: launched.error?.message ?? '', ...(launched.error ? { code: launched.error.code } : {}) };
        } else {
          // Loaded on the first command run, not at start-up: with the in-process addon, `status`,
          // `plan` and `history` never spawn, and execa is ~100 ms of imports (docs/performance.md).
          const { execa } = await import('execa');
          const ran = await execa(file, argv, { reject: false, stdin: 'ignore', timeout, env: { LC_ALL: 'C' }, stripFinalNewline: false });
          result = { exitCode: ran.exitCode, failed: ran.failed, timedOut: ran.timedOut, code: (ran as { code?: string }).code, message: String(ran.message), stdout: String(ran.stdout ?? ''), stderr: String(ran.stderr ?? '') };
        }
        const { stdout, stderr } = result;
        if (result.failed && result.exitCode === undefined) {
          if (result.code === 'ENOENT') throw new EnvironmentError(`${command} not found; install it or point NATCTL_NFT at it`);
          if (result.timedOut) return { exitCode: 124, stdout, stderr: `${command} timed out` };
          return { exitCode: 128, stdout, stderr: stderr || result.message };
        }
        // Inside a namespace `ip netns exec` runs the command; when it cannot, it says so itself.
        if (netns !== undefined && result.exitCode !== 0 && /^exec of ".*" failed: No such file or directory/m.test(stderr)) {
          throw new EnvironmentError(`${command} not found (in netns ${netns}); install it or point NATCTL_NFT at it`);
        }
        return { exitCode: result.exitCode ?? 0, stdout, stderr };
      } catch (error) {
        if (error instanceof EnvironmentError) throw error;
        throw new EnvironmentError(`cannot run ${file}: ${(error as Error).message}`);
      }
    },
  };
}
