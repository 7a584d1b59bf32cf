// The real nftables backend: loads natctl's batch (`nft -j -f`: atomic, all or nothing) and
// reads the table back (`nft -j list table`) through a transport: the in-process addon, the
// spawned nft binary, or a scripted fake (transport.ts).
import { BackendCommandError, EnvironmentError } from '../../errors.js';
import type { Model } from '../../model/model.js';
import type { Backend, LiveState, Ruleset } from '../backend.js';
import type { Runner } from '../exec.js';
import type { NftDocument, NftListing } from './json.js';
import { compareShapes, listingToBatch, liveStateOf } from './listing.js';
import { renderNftDocument, renderNftFlush, tableFamily, tableName } from './render.js';
import { type NftTransport, createNftTransport } from './transport.js';

export { nftBinary } from './transport-spawn.js';

export interface NftBackendOptions {
  runner: Runner;
  /** Path of the nft binary: NATCTL_NFT, else `nft` on PATH. An explicit binary is spawned, never the addon. */
  nftPath?: string;
  /** Where batch files are written (default: the system temp dir). */
  tempDir?: string;
  /** How batches reach the kernel; default: the addon when it loads, else the spawned nft (transport.ts). */
  transport?: NftTransport;
}

function kernelMessage(stderr: string): string {
  // nft echoes the whole JSON batch after the error; keep the error lines only.
  return stderr.split('\n').filter((line) => /error|warning/i.test(line)).slice(0, 5).join('\n') || stderr.slice(0, 500);
}

export class NftBackend implements Backend {
  readonly name = 'nft' as const;
  readonly transport: NftTransport;
  // What this backend already parsed, keyed by the objects it handed out: a listing of
  // 10,000 mappings is megabytes of JSON, and verify/restore need it again right after read.
  private readonly listings = new WeakMap<LiveState, NftListing>();
  private readonly documents = new WeakMap<Ruleset, NftDocument>();

  constructor(options: NftBackendOptions) {
    this.transport = options.transport ?? createNftTransport({
      runner: options.runner,
      ...(options.nftPath !== undefined ? { nftPath: options.nftPath } : {}),
      ...(options.tempDir !== undefined ? { tempDir: options.tempDir } : {}),
    });
  }

  render(model: Model): Ruleset {
    const document = renderNftDocument(model);
    const ruleset: Ruleset = { backend: 'nft', text: `${JSON.stringify(document)}\n` };
    this.documents.set(ruleset, document);
    return ruleset;
  }

  private listingOf(live: LiveState): NftListing {
    return this.listings.get(live) ?? (JSON.parse(live.raw) as NftListing);
  }

  private async loadText(text: string, checkOnly: boolean): Promise<void> {
    const result = await this.transport.run(text, { check: checkOnly });
    if (result.exitCode !== 0) throw new BackendCommandError(result.command, result.exitCode, kernelMessage(result.stderr));
  }

  check(ruleset: Ruleset): Promise<void> {
    return this.loadText(ruleset.text, true);
  }

  load(ruleset: Ruleset): Promise<void> {
    return this.loadText(ruleset.text, false);
  }

  async read(): Promise<LiveState | null> {
    const result = await this.transport.list(['table', tableFamily, tableName]);
    if (result.exitCode !== 0) {
      // nft's own answer for a missing table (not an exec failure, which the transport turns into an EnvironmentError).
      if (/^Error: No such file or directory/m.test(result.stderr)) return null;
      if (/Operation not permitted/.test(result.stderr)) throw new EnvironmentError('nft needs root (CAP_NET_ADMIN) to read the ruleset');
      throw new BackendCommandError('nft -j list table', result.exitCode, result.stderr);
    }
    const listing = JSON.parse(result.stdout) as NftListing;
    const live = liveStateOf(listing, result.stdout);
    this.listings.set(live, listing);
    return live;
  }

  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    const document = this.documents.get(ruleset) ?? (JSON.parse(ruleset.text) as NftDocument);
    return compareShapes(document, live ? this.listingOf(live) : null);
  }

  async restore(live: LiveState | null): Promise<void> {
    await this.loadText(JSON.stringify(listingToBatch(live ? this.listingOf(live) : null)), false);
  }

  async flush(): Promise<void> {
    await this.loadText(JSON.stringify(renderNftFlush()), false);
  }

  async version(): Promise<string> {
    return this.transport.version();
  }
}
