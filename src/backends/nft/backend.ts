// The real nftables backend: loads natctl's batch (`nft -j -f`: atomic, all or nothing) and
// reads the table back (`nft -j list table`) through a transport: the in-process addon, the
// spawned nft binary, or a scripted fake (transport.ts).
import type { CheckResult } from '../../doctor/checks.js';
import { nftDoctor } from './doctor.js';
import { EnvironmentError } from '../../errors.js';
import type { Model } from '../../model/model.js';
import type { Backend, LiveState, Ruleset } from '../backend.js';
import type { Runner } from '../exec.js';
import { BackendFailure, type FailureKind, isNotFound } from '../failure.js';
import { sweepTempFiles } from '../tempfile.js';
import type { NftDocument, NftListing } from './json.js';
import { foreignObjects, listingToBatch, liveStateOf, verifyListing } from './listing.js';
import { renderNftDocument, renderNftFlush, tableFamily, tableName } from './render.js';
import { type NftTransport, createNftTransport, describeNftTransport } from './transport.js';

import { nftBinary } from './transport-spawn.js';

export { nftBinary };

export interface NftBackendOptions {
  runner: Runner;
  /** Path of the nft binary (docs/contract.md): NATCTL_NFT, else `nft` on PATH. An explicit binary is spawned, never the addon. */
  nftPath?: string;
  /** Where batch files are written (default: the system temp dir); swept by `sweep`. */
  tempDir?: string;
  /** How batches reach the kernel; default: the addon when it loads, else the spawned nft (transport.ts). */
  transport?: NftTransport;
}

function kernelMessage(stderr: string): string {
  // nft echoes the whole JSON batch after the error; keep the error lines only.
  return stderr.split('\n').filter((line) => /error|warning/i.test(line)).slice(0, 5).join('\n') || stderr.slice(0, 500);
}

/**
 * What an nft failure means, from the kernel's errno text nft prints (nft 1.0.6). Classified
 * here once: nobody else matches nft's wording.
 */
export function classifyNftFailure(exitCode: number | undefined, stderr: string): FailureKind {
  if (exitCode === 124) return 'timeout';
  if (/No such file or directory/.test(stderr)) return 'not-found';
  if (/File exists/.test(stderr)) return 'exists';
  if (/Operation not permitted|Permission denied/.test(stderr)) return 'permission';
  if (/Device or resource busy/.test(stderr)) return 'busy';
  if (/No buffer space available|Cannot allocate memory|No space left on device/.test(stderr)) return 'resources';
  if (/not supported|Protocol not available/i.test(stderr)) return 'unsupported';
  if (/syntax error|Error: (Invalid|Could not parse|Unexpected|unknown)/i.test(stderr)) return 'invalid';
  return 'other';
}

const failure = (command: string, exitCode: number | undefined, stderr: string): BackendFailure =>
  new BackendFailure(classifyNftFailure(exitCode, stderr), command, exitCode, stderr);

export class NftBackend implements Backend {
  readonly name = 'nft' as const;
  readonly transport: NftTransport;
  // What this backend already parsed, keyed by the objects it handed out: a listing of
  // 10,000 mappings is megabytes of JSON, and verify/restore need it again right after read.
  private readonly listings = new WeakMap<LiveState, NftListing>();
  private readonly documents = new WeakMap<Ruleset, NftDocument>();

  private readonly runner: Runner;
  private readonly tempDir: string | undefined;
  private readonly nft: string;

  constructor(options: NftBackendOptions) {
    this.runner = options.runner;
    this.tempDir = options.tempDir;
    this.nft = nftBinary(options.nftPath);
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
    if (result.exitCode !== 0) throw failure(result.command, result.exitCode, kernelMessage(result.stderr));
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
      const error = failure('nft -j list table', result.exitCode, result.stderr);
      // nft's own answer for a missing table (not an exec failure, which the transport turns into an EnvironmentError).
      if (isNotFound(error)) return null;
      if (error.kind === 'permission') throw new EnvironmentError('nft needs root (CAP_NET_ADMIN) to read the ruleset');
      throw error;
    }
    const listing = JSON.parse(result.stdout) as NftListing;
    const live = liveStateOf(listing, result.stdout);
    this.listings.set(live, listing);
    return live;
  }

  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    const document = this.documents.get(ruleset) ?? (JSON.parse(ruleset.text) as NftDocument);
    return verifyListing(document, live ? this.listingOf(live) : null);
  }

  /**
   * Objects added to natctl's table by hand (named sets, counters, ...) are put back by
   * restore too; whether the kernel takes them back is checked here, before anything changes
   * (`nft -c`, nothing committed). Only tables holding such objects pay for the check.
   */
  async restorable(live: LiveState | null): Promise<string[]> {
    const listing = live ? this.listingOf(live) : null;
    const foreign = foreignObjects(listing);
    if (!foreign.length) return [];
    try {
      await this.loadText(JSON.stringify(listingToBatch(listing)), true);
      return [];
    } catch (error) {
      return [`natctl's table holds objects it did not create (${foreign.slice(0, 5).join(', ')}) and nft would not take them back: ${(error as Error).message}`];
    }
  }

  async restore(live: LiveState | null): Promise<void> {
    await this.loadText(JSON.stringify(listingToBatch(live ? this.listingOf(live) : null)), false);
  }

  /** Batch files a killed apply left in the scratch dir (call under the apply lock). */
  async sweep(): Promise<number> {
    return this.tempDir === undefined ? 0 : sweepTempFiles(this.tempDir);
  }

  /** Host checks for this backend: nft, kernel support, forwarding, other tables (src/doctor). */
  doctor(model?: Model): Promise<CheckResult[]> {
    return nftDoctor(model ? { runner: this.runner, nft: this.nft, model } : { runner: this.runner, nft: this.nft });
  }

  describe(): string {
    return describeNftTransport(this.runner.netns === undefined ? {} : { netns: this.runner.netns });
  }

  recoveryHint(): string {
    return `Inspect it with: nft list table ${tableFamily} ${tableName}`;
  }

  async flush(): Promise<void> {
    await this.loadText(JSON.stringify(renderNftFlush()), false);
  }

  async version(): Promise<string> {
    return this.transport.version();
  }
}
