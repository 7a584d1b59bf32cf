// The one place where backends are built from a name and what they need (issue 9): the
// engine, the CLI and library callers ask here and never construct a backend themselves. A
// new backend adds a case here and touches no engine code.
import { join } from 'node:path';
import { EnvironmentError } from '../errors.js';
import type { Backend, BackendName } from './backend.js';
import type { Runner } from './exec.js';
import { FakeBackend } from './fake.js';
import { IptablesBackend } from './iptables/backend.js';
import { NftBackend } from './nft/backend.js';

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

/** Builds the backend `choice` names. `auto` is nftables (the iptables-legacy backend is not wired in yet). */
export function createBackend(choice: BackendChoice, options: BackendOptions): Backend {
  const scratch = options.stateDir === undefined ? {} : { tempDir: join(options.stateDir, 'tmp') };
  switch (choice) {
    case 'fake':
      return new FakeBackend();
    case 'iptables-legacy':
      return new IptablesBackend({ runner: options.runner, ...scratch });
    case 'auto':
    case 'nft':
      return new NftBackend({ runner: options.runner, ...scratch, ...(options.nftPath === undefined ? {} : { nftPath: options.nftPath }) });
    default: {
      const unknown: never = choice;
      throw new EnvironmentError(`unknown backend ${JSON.stringify(unknown)} (choose one of: ${backendChoices.join(', ')})`);
    }
  }
}
