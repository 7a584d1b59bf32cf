// The one place where backends are built from a name and what they need (issue 9): the
// engine, the CLI and library callers ask here and never construct a backend themselves. A
// new backend adds a case here and touches no engine code.
import { join } from 'node:path';
import { EnvironmentError } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import { chooseBackend } from './choose.js';
import type { Runner } from './exec.js';
import { FakeBackend } from './fake.js';
import { IptablesBackend } from './iptables/backend.js';
import { NftBackend, nftBinary } from './nft/backend.js';

export type BackendChoice = 'auto' | BackendName;
export const backendChoices: readonly BackendChoice[] = ['auto', 'nft', 'iptables-legacy', 'fake'];

export interface BackendOptions {
  /** Runs the backend's commands (in a netns when asked). */
  runner: Runner;
  /**
   * The state dir: a backend keeps its scratch files under STATE/tmp, so that what a killed
   * apply left there is swept by the next one (Backend.sweep, under the apply lock).
   */
  stateDir?: string;
  /** nft binary (default: NATCTL_NFT, else `nft` on PATH). */
  nftPath?: string;
}

/** Which backend was built, and why (for `--json` output and doctor). */
export interface ChosenBackend {
  backend: Backend;
  reason: string;
}

const works = (backend: Backend): Promise<boolean> => backend.version().then(() => true, () => false);

/**
 * Builds the backend `choice` names; `auto` (the default) decides (docs/iptables.md, "Choosing
 * the backend"): the backend that applied the last generation (`previous`), checked with one
 * version call (no probe) and kept even when it fails (never a silent switch); without one,
 * nftables when `nft` works and the kernel accepts natctl's probe (src/backends/choose.ts),
 * else iptables-legacy.
 */
export async function openBackend(choice: BackendChoice, options: BackendOptions & { previous?: BackendName }): Promise<ChosenBackend> {
  const { previous, ...rest } = options;
  if (choice !== 'auto') return { backend: createBackend(choice, rest), reason: `${choice} was asked for (--backend ${choice})` };
  if (previous === 'nft' || previous === 'iptables-legacy') {
    const backend = createBackend(previous, rest);
    if (await works(backend)) return { backend, reason: `the last generation was applied with ${previous}, which still works` };
    // Never a silent switch: the kernel may still hold that backend's rules, which only that
    // backend can remove. Its own error then says what is missing; --backend switches on purpose.
    return { backend, reason: `the last generation was applied with ${previous}, which does not work now; natctl keeps it rather than switch by itself (pass --backend to switch)` };
  }
  // The probe goes through the nft backend's own transport (in process when the addon loads:
  // no nft process). Its scratch files go to the system temp dir, not STATE/tmp, which whoever
  // holds the apply lock sweeps while this process may still be choosing.
  const prober = createBackend('nft', { runner: options.runner, ...(options.nftPath === undefined ? {} : { nftPath: options.nftPath }) });
  const chosen = await chooseBackend(options.runner, {
    name: nftBinary(options.nftPath),
    version: () => prober.version(),
    check: (batch) => prober.check({ backend: 'nft', text: batch }),
  });
  return { backend: createBackend(chosen.name, rest), reason: chosen.reason };
}

/** Builds the backend `choice` names; `auto` without a probe is nftables (use openBackend to choose). */
export function createBackend(choice: BackendChoice, options: BackendOptions): Backend {
  const scratch = options.stateDir === undefined ? {} : { tempDir: join(options.stateDir, 'tmp') };
  switch (choice) {
    case 'fake':
      return new FakeBackend();
    case 'iptables-legacy':
      return new IptablesBackend({ runner: options.runner, ...scratch });
    case 'auto':
    case 'nft':
      return new NftBackend({ runner: options.runner, ...scratch, ...(options.stateDir === undefined ? {} : { baselineFile: join(options.stateDir, 'nft-shape.json') }), ...(options.nftPath === undefined ? {} : { nftPath: options.nftPath }) });
    default: {
      const unknown: never = choice;
      throw new EnvironmentError(`unknown backend ${JSON.stringify(unknown)} (choose one of: ${backendChoices.join(', ')})`);
    }
  }
}
