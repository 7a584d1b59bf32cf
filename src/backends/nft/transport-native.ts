// The in-process transport: batches and listings go through libnftables in the native addon
// (native/), on a worker thread, from memory: no process, no temp file. With a namespace the
// addon runs the call on a thread of its own that enters /run/netns/NAME before libnftables
// opens its netlink socket, so `--netns` needs no `ip netns exec` (docs/performance.md).
//
// Big calls go out of process: a batch over `bigBatch` bytes and a terse listing (read() asks
// for one only next to a big table's element dumps). libnftables parses a batch, or fetches a
// table into its cache, at ~2.4 KB per element: ~120 MB of natctl's own memory at 50,000
// mappings, freed after the call but counted in its peak. A spawned nft takes the same time
// for such a call (docs/performance.md, "Big batches out of process"), and its memory is its
// own. It is forked inside the namespace (spawn-in-netns.ts): still no `ip netns exec`.
import { EnvironmentError } from '../../errors.js';
import type { NativeBinding } from '../native.js';
import { netnsSpawnRunner } from './spawn-in-netns.js';
import { type NftResult, type NftTransport, listCommand } from './transport.js';
import { SpawnNftTransport, nftBinary } from './transport-spawn.js';

/** From this many bytes of batch (~13,000 mappings) a batch runs in a spawned nft. */
export const bigBatch = 1 << 20;

export interface NativeNftTransportOptions {
  /** Where the spawned nft of big calls writes its batch files (default: the system temp dir). */
  tempDir?: string;
  /** Big calls in process too (false: the default split). */
  inProcessOnly?: boolean;
}

export class NativeNftTransport implements NftTransport {
  readonly kind = 'addon' as const;
  readonly description: string;
  private spawned: SpawnNftTransport | undefined;

  constructor(
    private readonly binding: NativeBinding,
    private readonly netns?: string,
    options: NativeNftTransportOptions = {},
  ) {
    this.description = `in-process libnftables ${binding.libnftablesVersion}${netns === undefined ? '' : ` in netns ${netns}`}`;
    // Without withNetns (an older addon file) a namespace cannot be entered to fork: all in process.
    const canFork = netns === undefined || typeof binding.withNetns === 'function';
    this.spawned = options.inProcessOnly || !canFork ? undefined : new SpawnNftTransport({ runner: netnsSpawnRunner(netns), nft: nftBinary(), ...(options.tempDir !== undefined ? { tempDir: options.tempDir } : {}) });
  }

  private async call(command: string, input: string, check: boolean, terse = false): Promise<NftResult> {
    let answer;
    try {
      answer = await this.binding.run(input, this.netns === undefined ? { check, terse } : { check, terse, netns: this.netns });
    } catch (error) {
      // The call did not run at all: no libnftables context, or the namespace is gone.
      throw new EnvironmentError(`in-process libnftables: ${(error as Error).message}`);
    }
    // libnftables returns -1 where the nft binary exits 1.
    return { command, exitCode: answer.rc === 0 ? 0 : 1, stdout: answer.output, stderr: answer.error };
  }

  /**
   * `call` through the forked nft, else in process: a rejection means nft did not run (no nft
   * binary: libnftables without the nft package; no space for the batch file, as when a full
   * disk is why a restore runs), so the call is made here instead, and without a binary from
   * then on.
   */
  private async outOfProcess(call: (spawned: SpawnNftTransport) => Promise<NftResult>, inProcess: () => Promise<NftResult>): Promise<NftResult> {
    if (this.spawned) {
      try {
        return await call(this.spawned);
      } catch (error) {
        if (error instanceof EnvironmentError) this.spawned = undefined;
      }
    }
    return inProcess();
  }

  run(batch: string, options: { check: boolean }): Promise<NftResult> {
    const here = (): Promise<NftResult> => this.call(`nft${options.check ? ' -c' : ''} -j -f <batch> (in process)`, batch, options.check);
    return this.spawned && batch.length > bigBatch ? this.outOfProcess((spawned) => spawned.run(batch, options), here) : here();
  }

  list(args: readonly string[], options: { terse?: boolean } = {}): Promise<NftResult> {
    const command = listCommand(args);
    const here = (): Promise<NftResult> => this.call(`nft${options.terse ? ' -t' : ''} -j ${command} (in process)`, command, false, options.terse ?? false);
    return this.spawned && options.terse ? this.outOfProcess((spawned) => spawned.list(args, options), here) : here();
  }

  async version(): Promise<string> {
    return `nftables v${this.binding.libnftablesVersion} (in-process libnftables)`;
  }
}
