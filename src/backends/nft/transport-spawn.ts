// The spawned transport: every batch and listing runs the nft binary (through the runner, so
// `--netns` becomes `ip netns exec NAME nft ...`). Batches go through a private temp file:
// nft cannot read a batch from a pipe when Node spawns it (docs/performance.md).
import { EnvironmentError } from '../../errors.js';
import type { Runner } from '../exec.js';
import { withTempFile } from '../tempfile.js';
import { type NftResult, type NftTransport, listCommand } from './transport.js';

/** An explicit path, else NATCTL_NFT, else `nft` on PATH (docs/performance.md, "In-process nftables path"). */
export function nftBinary(explicit?: string): string {
  return explicit ?? process.env.NATCTL_NFT ?? 'nft';
}

export interface SpawnNftTransportOptions {
  runner: Runner;
  /** Path of the nft binary (default: nftBinary()). */
  nft?: string;
  /** Where batch files are written (default: the system temp dir). */
  tempDir?: string;
  /** Why this transport and not the addon, for `--verbose` and doctor. */
  reason?: string;
}

export class SpawnNftTransport implements NftTransport {
  readonly kind = 'spawn' as const;
  readonly description: string;
  private readonly runner: Runner;
  private readonly nft: string;
  private readonly tempDir: string | undefined;

  constructor(options: SpawnNftTransportOptions) {
    this.runner = options.runner;
    this.nft = nftBinary(options.nft);
    this.tempDir = options.tempDir;
    const where = options.runner.netns === undefined ? '' : ` via ip netns exec ${options.runner.netns}`;
    this.description = `spawned ${this.nft}${where}${options.reason ? ` (${options.reason})` : ''}`;
  }

  run(batch: string, options: { check: boolean }): Promise<NftResult> {
    return withTempFile('ruleset.json', batch, async (file) => {
      const args = options.check ? ['-c', '-j', '-f', file] : ['-j', '-f', file];
      const result = await this.runner.run(this.nft, args);
      return { command: `nft ${args.join(' ')}`, ...result };
    }, this.tempDir);
  }

  async list(args: readonly string[], options: { terse?: boolean } = {}): Promise<NftResult> {
    const argv = [...(options.terse ? ['-t'] : []), '-j', ...listCommand(args).split(' ')];
    const result = await this.runner.run(this.nft, argv);
    return { command: `nft ${argv.join(' ')}`, ...result };
  }

  async version(): Promise<string> {
    const result = await this.runner.run(this.nft, ['--version']);
    if (result.exitCode !== 0) throw new EnvironmentError(`${this.nft} --version failed: ${result.stderr.trim()}`);
    return result.stdout.trim();
  }
}
