// The real nftables backend: loads natctl's batch in nft's text syntax (`nft -f`: atomic, all
// or nothing; docs/ruleset.md says why text) and reads the table back as JSON (`nft -j list
// table`) through a transport: the in-process addon, the spawned nft binary, or a scripted
// fake (transport.ts). Incremental changes: delta.ts.
import type { CheckResult } from '../../doctor/checks.js';
import { nftDoctor } from './doctor.js';
import { EnvironmentError } from '../../errors.js';
import type { MappingChanges } from '../../model/diff.js';
import type { Model } from '../../model/model.js';
import type { Backend, Delta, LiveState, Ruleset, StatusExpectation, StatusReading, StatusReadOptions } from '../backend.js';
import type { Runner } from '../exec.js';
import { BackendFailure, type FailureKind, isNotFound } from '../failure.js';
import { sweepTempFiles } from '../tempfile.js';
import { type DeltaPlan, renderNftDelta } from './delta.js';
import type { NftCommand, NftDocument, NftListing } from './json.js';
import { type StatusTable, compareStatusTable, countersOf, countersOfTable, foreignObjects, listingToBatch, liveStateOf, verifyListing } from './listing.js';
import { canEnterNetns } from '../../host/netns.js';
import { type CompactTable, DumpRaceError, type ElementsReader, elementsReader, encodeKey, getElements, hasSets, rawTableReader, readCompactPart, readShapeDigest, simpleLayout, startCompactRead } from './netlink-read.js';
import { compareCompactTable, countersOfCompact } from './status-compare.js';
import { ShapeBaseline, shapeFingerprint } from './shape-baseline.js';
import { markerName, renderNftDocument, renderNftFlush, tableFamily, tableName } from './render.js';
import { documentToBatchText, valueText } from './text.js';
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
  /**
   * How status reads the table without nft (netlink-read.ts); false: through the transport's
   * listing. Default: over netlink, unless a transport is given or NATCTL_NETLINK=0.
   */
  statusTable?: (() => Promise<StatusTable | null>) | false;
  /**
   * How read() takes the elements of a big table over netlink (netlink-read.ts, readElements)
   * next to a terse nft listing; false: one full nft listing. Default: in process, unless a
   * transport is given or NATCTL_NETLINK=0.
   */
  readElements?: ElementsReader | false;
  /** From how many simple mappings' elements read() takes them over netlink (default 4,096). */
  readElementsFrom?: number;
  /** Where status keeps what it learned of the table's shape (shape-baseline.ts); default: in memory only. */
  baselineFile?: string;
  /**
   * Whether the marker check (holds) and a delta's read-back look keys and sets up over
   * netlink (netlink-read.ts: hasSets, getElements) rather than through the transport. Default:
   * in process when it can be (no namespace, or the addon enters it), unless a transport is
   * given or NATCTL_NETLINK=0; the transport's nft takes over whenever a lookup fails.
   */
  netlinkLookups?: boolean;
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

const stampPattern = /^[0-9a-f]{1,32}$/;
/** From this size of a listing's text on, read() also reads the table's shape digest (checkShape): status would list such a table otherwise. */
const bigListing = 256 * 1024;
const where = `${tableFamily} ${tableName}`;

/** The message of each error nft printed for a batch (`[FILE:LINE:COL: ]Error: MESSAGE`), in order. */
/** An element as nft's JSON lists it, without its counter (what the delta sent has none). */
function withoutCounter(element: unknown): unknown {
  const strip = (key: unknown): unknown => {
    const elem = (key as { elem?: Record<string, unknown> } | null)?.elem;
    if (!elem || !('counter' in elem)) return key;
    const { counter: _counter, ...rest } = elem;
    return { elem: rest };
  };
  return Array.isArray(element) ? [strip(element[0]), element[1]] : strip(element);
}

function errorMessages(stderr: string): string[] {
  return [...stderr.matchAll(/(?:^|: )Error: (.*)$/gm)].map((m) => m[1]!);
}

function checkedStamp(stamp: string): string {
  if (!stampPattern.test(stamp)) throw new Error(`internal: stamp ${JSON.stringify(stamp)} is not [0-9a-f]{1,32}`);
  return stamp;
}

/** A ruleset this process did not render: rendered as JSON by an older natctl, else unknown. */
function documentOfText(text: string): NftDocument {
  if (text.trimStart().startsWith('{')) return JSON.parse(text) as NftDocument;
  throw new Error('internal: an nft ruleset can only be verified by the backend that rendered it');
}

/**
 * Elements a document declares in the simple mappings' maps and sets (read over netlink), or 0
 * when another map or set holds some (then read() lists the table in full: no terse listing).
 */
function splitElementCount(document: NftDocument): number {
  let count = 0;
  for (const command of document.nftables) {
    const body = 'add' in command ? ((command.add as Record<string, { name?: unknown; elem?: unknown }>).map ?? (command.add as Record<string, { name?: unknown; elem?: unknown }>).set) : undefined;
    if (!Array.isArray(body?.elem) || !body.elem.length) continue;
    if (!simpleLayout(String(body.name))) return 0;
    count += body.elem.length;
  }
  return count;
}

/** The document behind each ruleset rendered in this process (the text is what nft loads; verify compares the document). */
const documents = new WeakMap<Ruleset, NftDocument>();

export class NftBackend implements Backend {
  readonly name = 'nft' as const;
  readonly transport: NftTransport;
  // What this backend already parsed, keyed by the objects it handed out: a listing of
  // 10,000 mappings is megabytes of JSON, and verify/restore need it again right after read.
  private readonly listings = new WeakMap<LiveState, NftListing>();
  private readonly deltas = new WeakMap<Delta, DeltaPlan>();

  private readonly runner: Runner;
  private readonly tempDir: string | undefined;
  private readonly nft: string;
  private readonly statusTable: (() => Promise<StatusTable | null>) | false;
  /** status's read in two threads, compared key by key (status-compare.ts); false: statusTable's way. */
  private readonly compactRead: (() => Promise<CompactTable | null>) | false;
  private readonly baseline: ShapeBaseline;
  /** The shape digest read with a big table's listing (readSplit), for verify to teach status. */
  private readonly shapes = new WeakMap<LiveState, string>();
  private readonly readElements: ElementsReader | false;
  private readonly readElementsFrom: number;
  /** Elements the last batch load() sent that read() takes over netlink: its read-back is big when this is (readSplit). */
  private loadedElements = 0;
  private readonly netlinkLookups: boolean;

  constructor(options: NftBackendOptions) {
    this.runner = options.runner;
    this.tempDir = options.tempDir;
    this.nft = nftBinary(options.nftPath);
    this.transport = options.transport ?? createNftTransport({
      runner: options.runner,
      ...(options.nftPath !== undefined ? { nftPath: options.nftPath } : {}),
      ...(options.tempDir !== undefined ? { tempDir: options.tempDir } : {}),
    });
    this.statusTable = options.statusTable ?? (options.transport === undefined && process.env.NATCTL_NETLINK !== '0' ? rawTableReader(options.runner) : false);
    this.compactRead = options.statusTable === undefined && options.transport === undefined && process.env.NATCTL_NETLINK !== '0' ? () => startCompactRead(options.runner) : false;
    this.readElements = options.readElements ?? (options.transport === undefined && process.env.NATCTL_NETLINK !== '0' ? (elementsReader(options.runner) ?? false) : false);
    this.readElementsFrom = options.readElementsFrom ?? 4096;
    this.baseline = new ShapeBaseline(options.baselineFile);
    this.netlinkLookups = options.netlinkLookups ?? (options.transport === undefined && process.env.NATCTL_NETLINK !== '0' && (options.runner.netns === undefined || canEnterNetns()));
  }

  render(model: Model, options: { stamp?: string } = {}): Ruleset {
    const document = renderNftDocument(model, options.stamp === undefined ? {} : { stamp: checkedStamp(options.stamp) });
    const ruleset: Ruleset = { backend: 'nft', text: documentToBatchText(document) };
    documents.set(ruleset, document);
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

  async load(ruleset: Ruleset): Promise<void> {
    const document = documents.get(ruleset);
    this.loadedElements = document ? splitElementCount(document) : 0;
    await this.loadText(ruleset.text, false);
  }

  /** natctl's table as nft lists it (`nft -j list table`, terse: `-t`), parsed; null when the kernel holds none. */
  private async listTable(terse = false): Promise<{ listing: NftListing; text: string } | null> {
    const result = await this.transport.list(['table', tableFamily, tableName], terse ? { terse: true } : {});
    if (result.exitCode !== 0) {
      const error = failure('nft -j list table', result.exitCode, result.stderr);
      // nft's own answer for a missing table (not an exec failure, which the transport turns into an EnvironmentError).
      if (isNotFound(error)) return null;
      if (error.kind === 'permission') throw new EnvironmentError('nft needs root (CAP_NET_ADMIN) to read the ruleset');
      throw error;
    }
    return { listing: JSON.parse(result.stdout) as NftListing, text: result.stdout };
  }

  async read(): Promise<LiveState | null> {
    if (this.readElements) {
      // A dump that overlapped a resize of the hash table (right after a big load) is read again once.
      for (const wait of [50, 0]) {
        const split = await this.readSplit(this.readElements).then((live) => ({ live }), (error: unknown) => ({ error }));
        if ('live' in split) {
          if (split.live) return split.live;
          break;
        }
        // Anything but a race (no table: ENOENT; an element netlink does not decode) lists at once.
        if (!(split.error instanceof DumpRaceError)) break;
        if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    // A big listing teaches status the table's shape when verify agrees (checkShape): its digest
    // is read right after, and kept if the ruleset generation did not move in between.
    const before = this.readElements ? await this.readElements.generation().catch(() => undefined) : undefined;
    const listed = await this.listTable();
    if (!listed) return null;
    const live = liveStateOf(listed.listing, listed.text);
    this.listings.set(live, listed.listing);
    if (before !== undefined && listed.text.length > bigListing) {
      const shape = await readCompactPart('shape', this.runner.netns).catch(() => undefined);
      if (shape?.meta?.digest && shape.generations.every((g) => g === before)) this.shapes.set(live, shape.meta.digest);
    }
    return live;
  }

  /**
   * The same listing as read(), for a big table at a fraction of the memory (docs/performance.md,
   * "Reading the ruleset back"): the simple mappings' elements over netlink, every other object (each rule of each
   * chain, in order) from a terse nft listing, which omits named sets' elements; the elements
   * are then put where nft lists them. undefined: read() lists in full instead, when the table is
   * small, when another named map or set holds elements (terse would drop them), or when the
   * ruleset changed between the reads (the generation id before the dumps and after the listing).
   */
  private async readSplit(reader: ElementsReader): Promise<LiveState | undefined> {
    // Right after loading a big batch (the read-back of an apply) the terse listing (nft's
    // thread or process: ~1.2 s at 50,000 mappings, fetching every element into nft's cache)
    // runs while this thread decodes the element dumps; both between two reads of the
    // generation id, so they saw the same ruleset. Otherwise one after the other: a small
    // table is listed in full anyway (docs/performance.md, "Reading the ruleset back").
    const parallel = this.loadedElements > 0 && this.loadedElements >= this.readElementsFrom;
    const start = parallel ? await reader.generation() : undefined;
    const terse = parallel ? this.listTable(true).then((listed) => ({ listed }), (error: unknown) => ({ error })) : undefined;
    const read = await reader.elements(this.readElementsFrom).finally(() => terse);
    const early = await terse;
    if (early && 'error' in early) throw early.error;
    if (!read || read.othersWithElements.length) return undefined;
    if (start !== undefined && read.generation !== start) return undefined;
    let count = 0;
    for (const list of Object.values(read.elements)) count += list.length;
    if (count < this.readElementsFrom) return undefined;
    const listed = early ? early.listed : await this.listTable(true);
    // The table's shape digest in the same ruleset generation: a verify that agrees teaches status (checkShape).
    const shape = await readCompactPart('shape', this.runner.netns).catch(() => undefined);
    if (!listed || (await reader.generation()) !== read.generation) return undefined;
    const { listing } = listed;
    for (const object of listing.nftables) {
      const kind = 'map' in object ? 'map' : 'set' in object ? 'set' : undefined;
      if (!kind) continue;
      const body = (object as unknown as Record<string, Record<string, unknown>>)[kind]!;
      const elements = read.elements[String(body.name)];
      // nft lists an empty set without "elem", and "elem" before "stmt" (nft 1.0.6).
      if (!elements?.length) continue;
      const placed: Record<string, unknown> = {};
      for (const key of Object.keys(body)) {
        if (key === 'stmt') placed.elem = elements;
        placed[key] = body[key];
      }
      placed.elem = elements;
      (object as unknown as Record<string, unknown>)[kind] = placed;
    }
    let raw: string | undefined;
    const live = liveStateOf(listing, '');
    if (shape?.meta?.digest && shape.generations.every((g) => g === read.generation)) this.shapes.set(live, shape.meta.digest);
    // The listing's text, as a full listing would have parsed, built only if asked for.
    Object.defineProperty(live, 'raw', { get: () => (raw ??= JSON.stringify(listing)), enumerable: true });
    // Its length, without building it: the elements' texts are summed until they pass `length`.
    live.rawLongerThan = (length: number): boolean => {
      if (raw !== undefined) return raw.length > length;
      // Each element is part of the text, with a comma: a lower bound.
      let sum = 0;
      for (const list of Object.values(read.elements)) {
        for (const element of list) {
          sum += JSON.stringify(element).length + 1;
          if (sum > length) return true;
        }
      }
      return (raw ??= JSON.stringify(listing)).length > length;
    };
    this.listings.set(live, listing);
    return live;
  }

  /**
   * status (docs/operations.md, "status"): the counters and a comparison with the last
   * generation's render, read over nf_tables netlink when it can (netlink-read.ts: the names of
   * the chains, maps and sets, the rules' counters, every element of the simple mappings' maps
   * and sets), else from one nft listing of the table, compared in full. Through nft, one
   * `list table` is the cheapest read nft 1.0.6 offers: listing any chain (or the table with -t)
   * first fetches every set's elements into its cache, so listing maps and chains apart costs
   * more, not less (docs/performance.md, "Reading the ruleset back"). Either way no normalized
   * text and no batch text is built, and the expected model is built only after the read.
   */
  async readStatus(expected: () => StatusExpectation, options: StatusReadOptions = {}): Promise<StatusReading> {
    let document: NftDocument | undefined;
    const expectedDocument = (): NftDocument => (document ??= this.expectedDocument(expected()));
    if (this.compactRead) {
      // The dumps run in two threads while this one builds the render they are compared with
      // (docs/performance.md, "status"); any failure reads the table another way below.
      let pending = this.compactRead().catch(() => undefined);
      expectedDocument();
      // A dump that overlapped a resize of a hash table (a key came twice, right after a big
      // load) is read again once; then the other ways below.
      for (const wait of [50, 0]) {
        const table = await pending;
        if (table === undefined) break;
        let compared: StatusReading | undefined;
        try {
          const problems = compareCompactTable(expectedDocument(), table);
          const { counters, blocked } = table && options.counters !== false ? countersOfCompact(table) : { counters: [], blocked: [] };
          compared = { active: table !== null, counters, blocked, problems };
        } catch {
          if (!wait) break;
          await new Promise((resolve) => setTimeout(resolve, wait));
          pending = this.compactRead().catch(() => undefined);
          continue;
        }
        return table ? { ...compared, problems: await this.checkShape(expectedDocument(), table, compared.problems) } : compared;
      }
    }
    const table = this.statusTable ? await this.statusTable().catch(() => undefined) : undefined;
    if (table !== undefined) {
      // The counters first, before the model and its render exist (a lower peak than the other way round).
      const { counters, blocked } = table ? countersOfTable(table) : { counters: [], blocked: [] };
      return { active: table !== null, counters, blocked, problems: compareStatusTable(expectedDocument(), table) };
    }
    const listing = (await this.listTable())?.listing ?? null;
    const { counters, blocked } = listing ? countersOf(listing) : { counters: [], blocked: [] };
    return { active: listing !== null, counters, blocked, problems: verifyListing(expectedDocument(), listing) };
  }

  /**
   * The rules, chains and small maps, which the element comparison does not look into: the
   * table's digest (netlink-read.ts, shapeDigest) is one seen while the kernel agreed with
   * this render, else one listing through nft compares everything rule by rule (the problems
   * then are that comparison's), and a digest read in the same ruleset generation as a listing
   * that agreed is learned (shape-baseline.ts).
   */
  private async checkShape(document: NftDocument, table: CompactTable, problems: string[]): Promise<string[]> {
    if (table.digest === undefined) return problems;
    const fingerprint = shapeFingerprint(document);
    if (await this.baseline.knows(fingerprint, table.digest)) return problems;
    const listing = (await this.listTable())?.listing ?? null;
    const full = verifyListing(document, listing);
    // Learned only when the table had this digest before and after the listing that agreed.
    if (!full.length && (await readShapeDigest(this.runner).catch(() => undefined)) === table.digest) await this.baseline.learn(fingerprint, table.digest);
    return full;
  }

  private expectedDocument({ model, stamp }: StatusExpectation): NftDocument {
    return renderNftDocument(model, stamp === undefined ? {} : { stamp: checkedStamp(stamp) });
  }

  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    const document = documents.get(ruleset) ?? documentOfText(ruleset.text);
    const problems = verifyListing(document, live ? this.listingOf(live) : null);
    const digest = live ? this.shapes.get(live) : undefined;
    if (!problems.length && digest !== undefined) this.baseline.learnNow(shapeFingerprint(document), digest);
    return problems;
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
      await this.loadText(documentToBatchText(listingToBatch(listing)), true);
      return [];
    } catch (error) {
      return [`natctl's table holds objects it did not create (${foreign.slice(0, 5).join(', ')}) and nft would not take them back: ${(error as Error).message}`];
    }
  }

  async restore(live: LiveState | null): Promise<void> {
    await this.loadText(documentToBatchText(listingToBatch(live ? this.listingOf(live) : null)), false);
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
    const netns = this.runner.netns;
    const lookups = this.netlinkLookups
      ? `netlink lookups in process${netns === undefined ? '' : ` (the addon enters netns ${netns})`}`
      : `netlink lookups off (${process.env.NATCTL_NETLINK === '0' ? 'NATCTL_NETLINK=0' : 'the addon cannot enter the namespace'}): through nft`;
    return `${describeNftTransport(netns === undefined ? {} : { netns })}; ${lookups}`;
  }

  recoveryHint(): string {
    return `Inspect it with: nft list table ${tableFamily} ${tableName}`;
  }

  async flush(): Promise<void> {
    await this.loadText(documentToBatchText(renderNftFlush()), false);
  }

  /**
   * The marker set named after the stamp: one lookup by name over netlink (no process, no nft
   * cache), else one small listing through the transport; whatever the number of mappings.
   */
  async holds(stamp: string): Promise<boolean> {
    return (await this.markers([stamp]))[0]!;
  }

  /** holds() of each stamp, side by side. */
  private async markers(stamps: string[]): Promise<boolean[]> {
    const valid = stamps.map((stamp) => stampPattern.test(stamp));
    const names = stamps.filter((_stamp, i) => valid[i]).map(markerName);
    let found: boolean[] | undefined;
    if (this.netlinkLookups && names.length) found = await hasSets(this.runner.netns, names).catch(() => undefined);
    found ??= await Promise.all(names.map((name) => this.listsSet(name)));
    let next = 0;
    return valid.map((ok) => ok && found[next++]!);
  }

  private async listsSet(name: string): Promise<boolean> {
    const result = await this.transport.list(['set', tableFamily, tableName, name]);
    if (result.exitCode === 0) return true;
    const error = failure('nft -j list set', result.exitCode, result.stderr);
    if (isNotFound(error)) return false;
    if (error.kind === 'permission') throw new EnvironmentError('nft needs root (CAP_NET_ADMIN) to read the ruleset');
    throw error;
  }

  renderDelta(before: Model, after: Model, stamp: { from: string; to: string }, changes?: MappingChanges): Delta | undefined {
    const plan = renderNftDelta(before, after, { from: checkedStamp(stamp.from), to: checkedStamp(stamp.to) }, changes);
    if (!plan) return undefined;
    const delta: Delta = { backend: 'nft', text: plan.cleanup ? `${plan.main}# after the batch above committed (docs/ruleset.md):\n${plan.cleanup}` : plan.main, summary: plan.summary };
    this.deltas.set(delta, plan);
    return delta;
  }

  private planOf(delta: Delta): DeltaPlan {
    const plan = this.deltas.get(delta);
    if (!plan) throw new Error('internal: this delta was not rendered by this backend');
    return plan;
  }

  /**
   * The main batch, atomically; refused: nothing changed. Then the deferred chain deletes
   * (docs/ruleset.md, "Incremental changes"): retried, since a kernel before 6.2 may still count
   * the reference of an element the main batch deleted; what stays is reported by verifyDelta.
   */
  async loadDelta(delta: Delta): Promise<void> {
    const plan = this.planOf(delta);
    await this.loadText(plan.main, false);
    if (!plan.cleanup) return;
    // Backing off up to ~1.3 s in all (kube-proxy leaves such chains for a sync at least a
    // second later); a 6.2+ kernel takes the first attempt.
    for (const wait of [10, 20, 40, 80, 160, 320, 640, 0]) {
      const result = await this.transport.run(plan.cleanup, { check: false });
      if (result.exitCode === 0) return;
      if (wait) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * Reads back what a delta touched, in a few small calls whatever N (docs/ruleset.md,
   * "Incremental changes"): the markers by listing them; the elements it added by `get element`
   * by one check-mode batch of probes (nft 1.0.6's `get element` and listings dump the whole
   * map first: seconds at 50,000, and the dump poisons the context's cache); the keys it
   * removed by a batch that creates and deletes them again, which commits (changing nothing)
   * only if none is there. Each check-mode call costs an aborted transaction, which waits for
   * an RCU grace period (~5-10 ms here), where a commit does not: one such call per delta.
   */
  async verifyDelta(delta: Delta): Promise<string[]> {
    const plan = this.planOf(delta);
    const problems: string[] = [];
    // The markers and the keys are looked up side by side (a few netlink round trips).
    const keyProblems: string[] = [];
    const [[hasTo, hasFrom], { present, absent }] = await Promise.all([this.markers([plan.to, plan.from]), this.readKeysByNetlink(plan, keyProblems)]);
    if (!hasTo) problems.push(`the marker ${markerName(plan.to)} is missing`);
    if (plan.from !== plan.to && hasFrom) problems.push(`the marker ${markerName(plan.from)} is still there`);
    problems.push(...keyProblems);
    // The added elements: one check-mode batch of `create` must fail with EEXIST once per
    // element (every key is there), then `add` of the elements as sent must commit (a key held
    // with other data fails it; the same element is left as it is, counter included). The
    // addon's error text does not say which line failed, so a count that does not add up is
    // narrowed down line by line (the slow path, only when something is wrong).
    // The simple mappings' elements are read by key over netlink where it can be opened
    // (src/backends/nft/netlink-read.ts: a lookup, not a dump); the rest, and all of them when
    // netlink cannot be used, are probed through nft below.
    const lines = [...present].flatMap(([map, elements]) => elements.map(({ text }) => ({ map, text, create: `create element ${where} ${map} { ${text} }\n`, add: `add element ${where} ${map} { ${text} }\n` })));
    if (lines.length) {
      const created = await this.transport.run(lines.map((l) => l.create).join(''), { check: true });
      const errors = errorMessages(created.stderr);
      const allThere = errors.length === lines.length && errors.every((e) => classifyNftFailure(1, e) === 'exists');
      const same = allThere ? await this.transport.run(lines.map((l) => l.add).join(''), { check: false }) : undefined;
      if (!allThere || same?.exitCode !== 0) {
        for (const line of lines) {
          const one = await this.transport.run(line.create, { check: true });
          if (one.exitCode === 0) problems.push(`${line.map} element missing: ${line.text}`);
          else if (failure('nft -c create element', one.exitCode, one.stderr).kind !== 'exists') problems.push(`${line.map}: ${kernelMessage(one.stderr)}`);
          else {
            const differs = await this.transport.run(line.add, { check: true });
            if (differs.exitCode !== 0) problems.push(`an element differs from what the delta sent (${kernelMessage(differs.stderr)}): ${line.map} { ${line.text} }`);
          }
        }
        if (!problems.length) problems.push(`reading the added elements back failed: ${kernelMessage((same ?? created).stderr)}`);
      }
    }
    const probes = [...absent].flatMap(([map, keys]) => keys.map((probe) => ({ map, probe })));
    if (probes.length) {
      const batch = probes.map(({ map, probe }) => `create element ${where} ${map} { ${probe} }\ndelete element ${where} ${map} { ${probe.split(' : ')[0]} }\n`).join('');
      const result = await this.transport.run(batch, { check: false });
      if (result.exitCode !== 0) {
        for (const { map, probe } of probes) {
          const one = await this.transport.run(`create element ${where} ${map} { ${probe} }\n`, { check: true });
          if (one.exitCode !== 0) problems.push(`${map} still holds ${probe.split(' : ')[0]}: ${kernelMessage(one.stderr)}`);
        }
        if (!problems.length) problems.push(`probing the removed keys failed: ${kernelMessage(result.stderr)}`);
      }
    }
    for (const [chain, rules] of plan.chains) {
      const result = await this.transport.list(['chain', tableFamily, tableName, chain]);
      if (result.exitCode !== 0) {
        problems.push(`chain ${chain}: ${kernelMessage(result.stderr)}`);
        continue;
      }
      const wanted: NftCommand[] = [{ add: { chain: { family: tableFamily, table: tableName, name: chain } } }, ...rules.map((rule): NftCommand => ({ add: { rule } }))];
      problems.push(...verifyListing({ nftables: wanted }, JSON.parse(result.stdout) as NftListing));
    }
    for (const chain of plan.gone) {
      const result = await this.transport.list(['chain', tableFamily, tableName, chain]);
      if (result.exitCode === 0) problems.push(`chain ${chain} is still there`);
      else if (!isNotFound(failure('nft -j list chain', result.exitCode, result.stderr))) problems.push(`chain ${chain}: ${kernelMessage(result.stderr)}`);
    }
    return problems;
  }

  /**
   * Looks up the delta's keys in the simple mappings' maps and sets over netlink, adding a
   * problem for each element missing, different or still there; returns what it could not
   * look up (other maps; everything when netlink cannot be opened here), for the nft probes.
   */
  private async readKeysByNetlink(plan: DeltaPlan, problems: string[]): Promise<{ present: DeltaPlan['present']; absent: DeltaPlan['absent'] }> {
    const lookups: { set: string; key: Buffer; text: string; expected?: string }[] = [];
    const present: DeltaPlan['present'] = new Map();
    const absent: DeltaPlan['absent'] = new Map();
    const keyOfText = (set: string, text: string): Buffer | undefined => {
      const values = plan.keyValues.get(text);
      return values && values.every((v) => typeof v === 'string' || typeof v === 'number') ? encodeKey(set, values as (string | number)[]) : undefined;
    };
    for (const [set, elements] of plan.present) {
      for (const element of elements) {
        const key = keyOfText(set, element.key);
        if (key) lookups.push({ set, key, text: element.key, expected: element.text });
        else present.set(set, [...(present.get(set) ?? []), element]);
      }
    }
    for (const [set, probes] of plan.absent) {
      for (const probe of probes) {
        const text = probe.split(' : ')[0]!;
        const key = keyOfText(set, text);
        if (key) lookups.push({ set, key, text });
        else absent.set(set, [...(absent.get(set) ?? []), probe]);
      }
    }
    // A scripted transport stands for a kernel netlink cannot see.
    if (!lookups.length || !this.netlinkLookups || this.transport.kind === 'fake') return { present: plan.present, absent: plan.absent };
    let found: unknown[];
    try {
      found = await getElements(this.runner.netns, lookups);
    } catch {
      return { present: plan.present, absent: plan.absent };
    }
    lookups.forEach((lookup, i) => {
      const element = found[i];
      if (lookup.expected === undefined) {
        if (element !== undefined) problems.push(`${lookup.set} still holds ${lookup.text}`);
      } else if (element === undefined) {
        problems.push(`${lookup.set} element missing: ${lookup.expected}`);
      } else if (valueText(withoutCounter(element)) !== lookup.expected) {
        problems.push(`an element differs from what the delta sent (the kernel holds ${valueText(withoutCounter(element))}): ${lookup.set} { ${lookup.expected} }`);
      }
    });
    return { present, absent };
  }

  async version(): Promise<string> {
    return this.transport.version();
  }
}
