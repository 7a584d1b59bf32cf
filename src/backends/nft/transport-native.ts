// The in-process transport: batches and listings go through libnftables in the native addon
// (native/), on a worker thread, from memory: no process, no temp file. With a namespace the
// addon runs the call on a thread of its own that enters /run/netns/NAME before libnftables
// opens its netlink socket, so `--netns` needs no `ip netns exec` (docs/performance.md).
import { EnvironmentError } from '../../errors.js';
import type { NativeBinding } from '../native.js';
import { type NftResult, type NftTransport, listCommand } from './transport.js';

export class NativeNftTransport implements NftTransport {
  readonly kind = 'addon' as const;
  readonly description: string;

  constructor(
    private readonly binding: NativeBinding,
    private readonly netns?: string,
  ) {
    this.description = `in-process libnftables ${binding.libnftablesVersion}${netns === undefined ? '' : ` in netns ${netns}`}`;
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

  run(batch: string, options: { check: boolean }): Promise<NftResult> {
    return this.call(`nft${options.check ? ' -c' : ''} -j -f <batch> (in process)`, batch, options.check);
  }

  list(args: readonly string[], options: { terse?: boolean } = {}): Promise<NftResult> {
    const command = listCommand(args);
    return this.call(`nft${options.terse ? ' -t' : ''} -j ${command} (in process)`, command, false, options.terse ?? false);
  }

  async version(): Promise<string> {
    return `nftables v${this.binding.libnftablesVersion} (in-process libnftables)`;
  }
}
