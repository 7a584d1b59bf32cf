// How the nft backend reaches the kernel: one seam, three transports (docs/performance.md,
// "In-process nftables path"). The backend renders, classifies errors and compares listings the
// same way whichever transport carries its batches:
// - spawn  (transport-spawn.ts):  the nft binary, `nft -j -f FILE` / `nft -j list ...`;
// - addon  (transport-native.ts): libnftables in process, on a worker thread (native/);
// - fake   (transport-fake.ts):   a scripted stand-in for the backend's unit tests.
import type { Runner } from '../exec.js';
import { type NativeBinding, loadNativeBinding, nativeBindingStatus } from '../native.js';
import { NativeNftTransport } from './transport-native.js';
import { SpawnNftTransport, nftBinary } from './transport-spawn.js';

export type NftTransportKind = 'spawn' | 'addon' | 'fake';

/** What nft answered: exit code 0 is success; stderr holds nft's error text otherwise. */
export interface NftResult {
  /** What ran, for error messages (e.g. `nft -j -f FILE`). */
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface NftTransport {
  readonly kind: NftTransportKind;
  /** One line for `--verbose` and `natctl doctor`: what carries the batches, and where. */
  readonly description: string;
  /**
   * Runs a batch, nft JSON or nft's text syntax (JSON is tried first, as `nft -j -f` does), all
   * or nothing. `check`: evaluate it against the kernel without committing (`nft -c`).
   * Resolves whatever nft answered; rejects (EnvironmentError) only when nft could not run.
   */
  run(batch: string, options: { check: boolean }): Promise<NftResult>;
  /**
   * `nft -j list ARGS...`, e.g. ['table', 'inet', 'natctl']: the JSON listing in stdout.
   * `terse` (nft -t): named sets and maps without their elements.
   */
  list(args: readonly string[], options?: { terse?: boolean }): Promise<NftResult>;
  /** Tool name and version. */
  version(): Promise<string>;
}

/** Arguments of a list command are names natctl chose; anything else is a bug, not input. */
export function listCommand(args: readonly string[]): string {
  for (const arg of args) {
    if (!/^[A-Za-z0-9_.-]+$/.test(arg)) throw new Error(`nft list: ${JSON.stringify(arg)} is not an nft object name`);
  }
  return `list ${args.join(' ')}`;
}

export interface TransportChoice {
  runner: Runner;
  /** An explicit nft binary (option, else NATCTL_NFT): that binary is what runs. */
  nftPath?: string;
  tempDir?: string;
}

export type TransportDecision =
  | { kind: 'addon'; binding: NativeBinding }
  | { kind: 'spawn'; nft: string; reason: string };

/**
 * The addon when it is built, loads and is not disabled (NATCTL_NATIVE=0); otherwise the nft
 * binary, quietly. An explicit nft binary (nftPath, NATCTL_NFT) is honoured: it is spawned.
 */
export function decideNftTransport(nftPath?: string): TransportDecision {
  const explicit = nftPath ?? process.env.NATCTL_NFT;
  if (explicit !== undefined) return { kind: 'spawn', nft: nftBinary(explicit), reason: `the nft binary is set explicitly (${nftPath !== undefined ? 'nftPath' : 'NATCTL_NFT'}=${explicit})` };
  const status = nativeBindingStatus();
  const binding = loadNativeBinding();
  if (binding) return { kind: 'addon', binding };
  return { kind: 'spawn', nft: nftBinary(), reason: status.loaded ? 'the in-process addon is not loaded' : `the in-process addon is not loaded: ${status.reason}` };
}

export function createNftTransport(choice: TransportChoice): NftTransport {
  const decision = decideNftTransport(choice.nftPath);
  if (decision.kind === 'addon') return new NativeNftTransport(decision.binding, choice.runner.netns, choice.tempDir !== undefined ? { tempDir: choice.tempDir } : {});
  return new SpawnNftTransport({ runner: choice.runner, nft: decision.nft, ...(choice.tempDir !== undefined ? { tempDir: choice.tempDir } : {}), reason: decision.reason });
}

/** The line `--verbose` prints: which transport natctl uses, where, and why not the addon. */
export function describeNftTransport(options: { nftPath?: string; netns?: string } = {}): string {
  const decision = decideNftTransport(options.nftPath);
  if (decision.kind === 'addon') {
    const where = options.netns === undefined ? '' : `, a worker thread enters netns ${options.netns}`;
    return `nft transport: in-process libnftables ${decision.binding.libnftablesVersion} (native addon${where})`;
  }
  const where = options.netns === undefined ? '' : ` via ip netns exec ${options.netns}`;
  return `nft transport: spawned ${decision.nft}${where} (${decision.reason})`;
}
