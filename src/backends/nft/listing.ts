// Reading nft's JSON listing of natctl's table: normalizing it for comparisons, pulling
// out counters, comparing its shape with a batch, and turning it back into a batch.
import type { LiveState, MappingCounters } from '../backend.js';
import type { NftCommand, NftDocument, NftListing, NftObject } from './json.js';
import { ipFamily, ipToBig } from '../../config/addr.js';
import { tableFamily, tableName } from './render.js';
import { formatEndpoint } from '../../model/target.js';

type ListedObject = Exclude<NftListing['nftables'][number], { metainfo: unknown }>;

function objectsOf(listing: NftListing): ListedObject[] {
  return listing.nftables.filter((o): o is ListedObject => !('metainfo' in o));
}

/** Drops handles and zeroes counters, so two listings of the same ruleset compare equal. */
export function normalizeListing(listing: NftListing): string {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value === null || typeof value !== 'object') return value;
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) {
      if (key === 'handle') continue;
      out[key] = key === 'counter' && child && typeof child === 'object' ? { packets: 0, bytes: 0 } : strip(child);
    }
    return out;
  };
  return objectsOf(listing).map((o) => JSON.stringify(strip(o))).join('\n');
}

function counterOf(expr: unknown[]): { packets: number; bytes: number } | undefined {
  for (const statement of expr) {
    const counter = (statement as { counter?: { packets?: number; bytes?: number } }).counter;
    if (counter) return { packets: counter.packets ?? 0, bytes: counter.bytes ?? 0 };
  }
  return undefined;
}

/** An element with its own counter (and comment), as nft 1.0.6 lists it ({"elem": {"val", "comment", "counter"}}). */
interface CountedElement { val: unknown; comment?: string; counter?: { packets?: number; bytes?: number } }

function countedElement(item: unknown): CountedElement | undefined {
  const key = Array.isArray(item) ? item[0] : item;
  const elem = (key as { elem?: CountedElement } | null)?.elem;
  return elem && typeof elem === 'object' && 'val' in elem ? elem : undefined;
}

const simpleDnatMap = /^dnat([46])(_addr)?$/;
const simpleForwardSet = /^fwd([46])_([a-z]+)(_addr)?$/;
/** One simple mapping's key, the same from its DNAT element and its forward element. */
const simpleKey = (family: string, addr: unknown, proto: unknown, port: unknown): string => `${family} ${String(addr ?? '')} ${String(proto)} ${String(port)}`;

/**
 * Counters of simple mappings, kept per element (docs/ruleset.md): the DNAT data map's element
 * counts connections and names the mapping (its comment); the forward set's element, with the
 * same key, counts packets and bytes. Fed one element at a time (`element`), in any order, then
 * `finish` joins the forward elements to the names.
 */
class ElementCounters {
  private readonly names = new Map<string, string>();
  private readonly forward = new Map<string, { packets: number; bytes: number }[]>();
  constructor(private readonly entry: (name: string) => MappingCounters) {}

  private last: { name: string; dnat: RegExpExecArray | null; fwd: RegExpExecArray | null } = { name: '', dnat: null, fwd: null };

  /** One element of the map or set `name` (others are ignored). */
  element(name: string, item: unknown): void {
    // Elements come set by set: the set's name is parsed once per run of its elements.
    if (this.last.name !== name) {
      const dnatMatch = simpleDnatMap.exec(name);
      this.last = { name, dnat: dnatMatch, fwd: dnatMatch ? null : simpleForwardSet.exec(name) };
    }
    const { dnat, fwd } = this.last;
    if (!dnat && !fwd) return;
    const elem = countedElement(item);
    if (!elem) return;
    const parts = (elem.val as { concat?: unknown[] } | null)?.concat;
    if (dnat && elem.comment) {
      const [addr, proto, port] = dnat[2] ? (parts ?? []) : [undefined, ...(parts ?? [])];
      this.names.set(simpleKey(dnat[1]!, addr, proto, port), elem.comment);
      const mapping = this.entry(elem.comment);
      mapping.connections = elem.counter?.packets ?? 0;
      mapping.description = `${String(proto)} ${formatEndpoint(String(addr ?? (dnat[1] === '4' ? '0.0.0.0' : '::')), { from: Number(port), to: Number(port) })}`;
    } else if (fwd) {
      const [addr, port] = fwd[3] ? (parts ?? []) : [undefined, elem.val];
      const key = simpleKey(fwd[1]!, addr, fwd[2], port);
      const count = { packets: elem.counter?.packets ?? 0, bytes: elem.counter?.bytes ?? 0 };
      const list = this.forward.get(key);
      if (list) list.push(count);
      else this.forward.set(key, [count]);
    }
  }

  finish(): void {
    for (const [key, counts] of this.forward) {
      const name = this.names.get(key);
      if (name === undefined) continue;
      const mapping = this.entry(name);
      for (const count of counts) {
        mapping.packets = count.packets;
        mapping.bytes = count.bytes;
      }
    }
  }
}

/** The counters of `rules`' chains (m-NAME, f-NAME, b-NAME: complex mappings and block rules) into `entry` and `blocked`. */
export function ruleCounters(chain: string, count: { packets: number; bytes: number }, comment: string | undefined, entry: (name: string) => MappingCounters, blocked: LiveState['blocked']): void {
  if (chain.startsWith('m-')) {
    const mapping = entry(chain.slice(2));
    mapping.connections = count.packets;
    if (comment) mapping.description = comment.replace(/^natctl mapping \S+ /, '');
  } else if (chain.startsWith('f-')) {
    const mapping = entry(chain.slice(2));
    mapping.packets = count.packets;
    mapping.bytes = count.bytes;
  } else if (chain.startsWith('b-')) {
    blocked.push({ name: chain.slice(2), ...count });
  }
}

/** A fresh counters table: the entry of a name, created on first use. */
export function countersTable(): { counters: Map<string, MappingCounters>; entry: (name: string) => MappingCounters } {
  const counters = new Map<string, MappingCounters>();
  const entry = (name: string): MappingCounters => {
    let found = counters.get(name);
    if (!found) {
      found = { name, description: '', connections: 0, packets: 0, bytes: 0 };
      counters.set(name, found);
    }
    return found;
  };
  return { counters, entry };
}

/** Per-mapping and per-block-rule counters of a listing, in one pass over it (docs/ruleset.md, "Counters"). */
export function countersOf(listing: NftListing): Pick<LiveState, 'counters' | 'blocked'> {
  const { counters, entry } = countersTable();
  const blocked: LiveState['blocked'] = [];
  const objects = objectsOf(listing);
  const elements = new ElementCounters(entry);
  for (const object of objects) {
    const body = ('map' in object ? object.map : 'set' in object ? object.set : undefined) as { name: string; elem?: unknown[] } | undefined;
    if (body?.elem) for (const item of body.elem) elements.element(body.name, item);
  }
  elements.finish();
  for (const object of objects) {
    if (!('rule' in object)) continue;
    const { chain, expr, comment } = object.rule;
    const count = counterOf(expr);
    if (count) ruleCounters(chain, count, comment, entry, blocked);
  }
  return { counters: [...counters.values()], blocked };
}

/**
 * A listing as a LiveState. `normalized`, `counters` and `blocked` are computed on first use
 * and `raw` is the listing's text as nft printed it: at 50,000 mappings the normalized text
 * costs a second copy of the whole tree and a quarter of a second, and a full apply's read-back
 * needs neither it nor the counters (docs/performance.md, "Reading the ruleset back").
 */
export function liveStateOf(listing: NftListing, raw: string): LiveState {
  let normalized: string | undefined;
  let counted: Pick<LiveState, 'counters' | 'blocked'> | undefined;
  return {
    raw,
    get normalized() {
      return (normalized ??= normalizeListing(listing));
    },
    get counters() {
      return (counted ??= countersOf(listing)).counters;
    },
    get blocked() {
      return (counted ??= countersOf(listing)).blocked;
    },
  };
}

/** Any object of a listing (chain, rule, map, set, counter, quota, flowtable, ...), keyed by its kind. */
export type AnyObject = Record<string, Record<string, unknown>>;
const kindOf = (object: object): string => Object.keys(object)[0] ?? '';
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * One canonical text for an expression, whichever side wrote it. nft lists back what it was
 * given with a few rewrites (nft 1.0.6), undone here on both sides: an anonymous set of one
 * element is listed as the element, `in` on a set as `==`, set elements in its own order, one
 * flag bare or in a list;
 * handles are dropped and counters zeroed.
 */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'string') return ipFamily(value) === undefined ? JSON.stringify(value) : (intervalsText([value]) ?? JSON.stringify(value));
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  if (keys.length === 1 && keys[0] === 'set' && Array.isArray(object.set)) {
    const items = object.set as unknown[];
    const merged = intervalsText(items);
    if (merged !== undefined) return merged;
    const texts = items.map(canonical);
    return texts.length === 1 ? texts[0]! : `{"set":[${texts.sort(byText).join(',')}]}`;
  }
  if (keys.length === 1 && (keys[0] === 'prefix' || keys[0] === 'range')) {
    const merged = intervalsText([object]);
    if (merged !== undefined) return merged;
  }
  // Written straight to text (no intermediate objects): a listing of 10,000 mappings is 40,000 objects.
  let out = '';
  for (const key of keys.sort(byText)) {
    if (key === 'handle') continue;
    const child = object[key];
    let text: string;
    if (key === 'counter' && child !== null && typeof child === 'object' && !Array.isArray(child)) text = '{"bytes":0,"packets":0}';
    else if (key === 'op' && child === 'in') text = '"=="';
    else if (key === 'flags' && Array.isArray(child) && child.length === 1) text = canonical(child[0]); // one flag: nft may list it bare
    else if (key === 'elem' && Array.isArray(child)) text = `[${child.map(canonical).sort(byText).join(',')}]`;
    else text = canonical(child);
    out += `${out ? ',' : ''}${JSON.stringify(key)}:${text}`;
  }
  return `{${out}}`;
}

type Interval = { kind: 'ip4' | 'ip6' | 'number'; from: bigint; to: bigint };

/** An address, prefix, port or range of either as the interval it covers; undefined for anything else. */
function intervalOf(item: unknown): Interval | undefined {
  if (typeof item === 'number' && Number.isInteger(item)) return { kind: 'number', from: BigInt(item), to: BigInt(item) };
  if (typeof item === 'string') {
    const family = ipFamily(item);
    if (family === undefined) return undefined;
    const at = ipToBig(item);
    return { kind: family === 4 ? 'ip4' : 'ip6', from: at, to: at };
  }
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return undefined;
  const object = item as Record<string, unknown>;
  if (Object.keys(object).length !== 1) return undefined;
  const prefix = object.prefix as { addr?: unknown; len?: unknown } | undefined;
  if (prefix && typeof prefix.addr === 'string' && typeof prefix.len === 'number') {
    const family = ipFamily(prefix.addr);
    if (family === undefined) return undefined;
    const host = BigInt((family === 4 ? 32 : 128) - prefix.len);
    const from = (ipToBig(prefix.addr) >> host) << host;
    return { kind: family === 4 ? 'ip4' : 'ip6', from, to: from + (1n << host) - 1n };
  }
  const range = object.range;
  if (Array.isArray(range) && range.length === 2) {
    const [low, high] = [intervalOf(range[0]), intervalOf(range[1])];
    if (!low || !high || low.kind !== high.kind) return undefined;
    return { kind: low.kind, from: low.from, to: high.to };
  }
  return undefined;
}

/**
 * The addresses or ports a set (or one prefix or range) covers, merged: nft merges adjacent and
 * overlapping intervals of an anonymous set (two /25 are listed as one /24, 1, 2, 3 as 1-3, a
 * /24 and an address in it as the /24). A lone port stays a number, as nft lists it.
 */
function intervalsText(items: unknown[]): string | undefined {
  const intervals: Interval[] = [];
  for (const item of items) {
    const interval = intervalOf(item);
    if (!interval || (intervals[0] && intervals[0].kind !== interval.kind)) return undefined;
    intervals.push(interval);
  }
  if (!intervals.length) return undefined;
  intervals.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  const merged: Interval[] = [];
  for (const interval of intervals) {
    const last = merged[merged.length - 1];
    if (last && interval.from <= last.to + 1n) {
      if (interval.to > last.to) last.to = interval.to;
    } else merged.push({ ...interval });
  }
  const kind = merged[0]!.kind;
  if (kind === 'number' && merged.length === 1 && merged[0]!.from === merged[0]!.to) return String(merged[0]!.from);
  return `{"${kind}":"${merged.map((i) => (i.from === i.to ? `${i.from}` : `${i.from}-${i.to}`)).join(',')}"}`;
}

const short = (value: string): string => (value.length > 300 ? `${value.slice(0, 300)}...` : value);
/** An object as a person reads it in a problem message (as written, without handle). */
export const display = (value: unknown): string => short(JSON.stringify(value, (key, child: unknown) => (key === 'handle' ? undefined : child)));

/**
 * A cheap exact text of a rule (handle dropped, counters zeroed). Equal cheap texts mean equal
 * rules; only rules whose cheap texts differ (nft's rewrites, or a real difference) pay for
 * `canonical`. Keeps verify of 10,000 mappings well under the cost of the load itself.
 */
function cheapRule(body: Record<string, unknown>): string {
  const expr = JSON.stringify(body.expr).replace(/"counter":\{"packets":\d+,"bytes":\d+\}/g, '"counter":{"packets":0,"bytes":0}');
  return `${String(body.family)} ${String(body.table)} ${String(body.chain)} ${JSON.stringify(body.comment ?? null)} ${expr}`;
}

function sameRule(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  return cheapRule(a) === cheapRule(b) || canonical(a) === canonical(b);
}

/** A cheap exact text of a definition, in its own key order, without handle and elements (see cheapRule). */
function cheapDefinition(body: Record<string, unknown>): string {
  let out = '';
  for (const key in body) if (key !== 'handle' && key !== 'elem') out += `${key}=${JSON.stringify(body[key])};`;
  return out;
}

/** An object's definition without its elements (compared separately, as sets). */
function definitionOf(body: Record<string, unknown>): string {
  if (!('elem' in body)) return canonical(body);
  const { elem: _elem, ...definition } = body;
  return canonical(definition);
}

const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Structural equality of two JSON values, counters' values ignored (canonical zeroes them
 * too), keys in any order (canonical sorts them): equal here means equal canonical texts.
 * Walks the values in place: no text is built.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
    return true;
  }
  const [x, y] = [a as Record<string, unknown>, b as Record<string, unknown>];
  let keys = 0;
  for (const key in x) {
    keys++;
    if (!hasOwn(y, key)) return false;
    if (key === 'counter' && isRecord(x[key]) && isRecord(y[key])) continue;
    if (!sameValue(x[key], y[key])) return false;
  }
  for (const _key in y) keys--;
  return keys === 0;
}

/** The text an element is looked up by: its key's value (a map element's first half), typed, so distinct keys never share one. */
function lookupKey(element: unknown): string {
  const key = Array.isArray(element) && element.length === 2 ? element[0] : element;
  const value = isRecord(key) && isRecord(key.elem) && hasOwn(key.elem, 'val') ? key.elem.val : key;
  if (typeof value === 'number') return `n${value}`;
  if (typeof value === 'string') return `s${value}`;
  const parts = isRecord(value) && Array.isArray(value.concat) ? (value.concat as unknown[]) : undefined;
  if (parts) {
    // c, then n<number> or s<string> for each part, NUL between them; built in one pass (no
    // array per element: 100,000 of them at 50,000 mappings, on both sides of a comparison).
    let text = 'c';
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (typeof part === 'number') text += i ? `\u0000n${part}` : `n${part}`;
      else if (typeof part === 'string' && !part.includes('\u0000')) text += i ? `\u0000s${part}` : `s${part}`;
      else return `j${JSON.stringify(value)}`;
    }
    return text;
  }
  return `j${JSON.stringify(value)}`;
}

/**
 * Elements compared as sets; returns the wanted elements the kernel lacks. Each wanted element
 * is looked up by its key and compared in place with the held one (sameValue); only those not
 * found so pay for `canonical`, against every held element, so the answer is the same as
 * comparing canonical texts throughout, at a hash lookup per element whatever the counters
 * counted (docs/performance.md, "Reading the ruleset back").
 */
function missingElements(wanted: unknown[], held: unknown[]): unknown[] {
  const byKey = new Map<string, unknown>();
  const shared = new Map<string, unknown[]>();
  for (const element of held) {
    const key = lookupKey(element);
    if (!byKey.has(key)) byKey.set(key, element);
    else shared.set(key, [...(shared.get(key) ?? [byKey.get(key)]), element]);
  }
  const unmatched = wanted.filter((element) => {
    const key = lookupKey(element);
    const candidates = shared.get(key) ?? (byKey.has(key) ? [byKey.get(key)] : []);
    return !candidates.some((candidate) => sameValue(element, candidate));
  });
  if (!unmatched.length) return [];
  const canonicalHave = new Set(held.map(canonical));
  return unmatched.filter((element) => !canonicalHave.has(canonical(element)));
}

type Body = Record<string, unknown>;

export interface Contents {
  /** Chains, maps, sets and every other named object, by "kind name". */
  objects: Map<string, Body>;
  /** Rules of each chain, in order. */
  rules: Map<string, Body[]>;
}

export function contentsOf(objects: AnyObject[]): Contents {
  const contents: Contents = { objects: new Map(), rules: new Map() };
  for (const object of objects) {
    const kind = kindOf(object);
    const body = object[kind]!;
    if (kind === 'table') continue;
    if (kind === 'rule') {
      const chain = String(body.chain);
      const list = contents.rules.get(chain);
      if (list) list.push(body);
      else contents.rules.set(chain, [body]);
      continue;
    }
    contents.objects.set(`${kind} ${String(body.name)}`, body);
  }
  return contents;
}

/**
 * Compares what the kernel holds with what a batch declared, object by object and rule by
 * rule (canonical forms, see `canonical`): a rule whose DNAT target, match or verdict differs
 * is caught even when every count agrees.
 */
export function verifyListing(document: NftDocument, listing: NftListing | null): string[] {
  const declared = document.nftables.flatMap((c) => ('add' in c ? [c.add as unknown as AnyObject] : []));
  const wanted = contentsOf(declared);
  const live = contentsOf(listing ? (objectsOf(listing) as unknown as AnyObject[]) : []);
  const problems: string[] = [];
  for (const [name, body] of wanted.objects) {
    const found = live.objects.get(name);
    if (found === undefined) {
      problems.push(`${name} is missing`);
      continue;
    }
    if (cheapDefinition(body) !== cheapDefinition(found)) {
      const [want, have] = [definitionOf(body), definitionOf(found)];
      if (want !== have) problems.push(`${name} differs: kernel holds ${display({ ...found, elem: undefined })}, expected ${display({ ...body, elem: undefined })}`);
    }
    const wantedElements = Array.isArray(body.elem) ? (body.elem as unknown[]) : [];
    const heldElements = Array.isArray(found.elem) ? (found.elem as unknown[]) : [];
    if (heldElements.length !== wantedElements.length) problems.push(`${name} has ${heldElements.length} elements, expected ${wantedElements.length}`);
    // Same sizes are not enough: every dispatch entry must send the same key to the same chain.
    for (const element of missingElements(wantedElements, heldElements)) problems.push(`${name} element missing or different: ${display(element)}`);
  }
  for (const name of live.objects.keys()) if (!wanted.objects.has(name)) problems.push(`${name} is not declared`);
  for (const [name, body] of wanted.objects) {
    if (!name.startsWith('chain ')) continue;
    const chain = String(body.name);
    if (!live.objects.has(name)) continue; // reported as a missing chain
    const rules = wanted.rules.get(chain) ?? [];
    const held = live.rules.get(chain) ?? [];
    if (held.length !== rules.length) {
      problems.push(`chain ${chain} has ${held.length} rules, expected ${rules.length}`);
      continue;
    }
    rules.forEach((rule, index) => {
      if (!sameRule(rule, held[index]!)) problems.push(`chain ${chain} rule ${index + 1} differs: kernel holds ${display(held[index])}, expected ${display(rule)}`);
    });
  }
  return problems;
}

/** Kinds natctl itself creates, and the names of its own sets and counters; anything else in its table was added by hand. */
const ownKinds = new Set(['table', 'chain', 'map', 'rule']);
const isOwn = (object: AnyObject): boolean => {
  const kind = kindOf(object);
  const name = String(object[kind]?.name);
  return ownKinds.has(kind) || (kind === 'set' && (simpleForwardSet.test(name) || /^g-[0-9a-f]+$/.test(name)));
};

/** Objects of a listing natctl did not create (named sets, counters, quotas, ...), as "kind name". */
export function foreignObjects(listing: NftListing | null): string[] {
  if (!listing) return [];
  return (objectsOf(listing) as unknown as AnyObject[]).filter((o) => !isOwn(o)).map((o) => `${kindOf(o)} ${String(o[kindOf(o)]!.name)}`);
}

const stripHandle = <T extends object>(value: T): T => {
  const { handle: _handle, ...rest } = value as T & { handle?: number };
  return rest as T;
};

/**
 * A listing as a batch that recreates it exactly, every object it holds (chains, maps,
 * sets, counters, quotas, ... even ones added by hand): chains first, then the named objects
 * with their elements (map elements jump to chains), then rules (which reference both).
 */
export function listingToBatch(listing: NftListing | null): NftDocument {
  const table = { family: tableFamily, name: tableName };
  const commands: NftCommand[] = [{ add: { table } }, { delete: { table } }];
  if (!listing) return { nftables: commands };
  const objects = objectsOf(listing) as unknown as AnyObject[];
  if (!objects.some((o) => 'table' in o)) return { nftables: commands };
  commands.push({ add: { table } });
  const rank = (o: AnyObject): number => ('chain' in o ? 0 : 'rule' in o ? 2 : 1);
  for (const pass of [0, 1, 2]) {
    for (const object of objects) {
      const kind = kindOf(object);
      if (kind === 'table' || rank(object) !== pass) continue;
      commands.push({ add: { [kind]: stripHandle(object[kind]!) } } as unknown as NftCommand);
    }
  }
  return { nftables: commands };
}

/** What status reads over netlink (netlink-read.ts), in the shape the counters need. */
export interface StatusTable {
  chains: string[];
  sets: string[];
  maps: string[];
  rules: { chain: string; counter?: { packets: number; bytes: number }; comment?: string }[];
  /** Every element of the maps and sets that hold simple mappings, as nft's JSON lists them. */
  elements: Record<string, unknown[]>;
}

/** A status table as a listing holding what countersOf reads: the element maps and sets, and each rule's counter. */
export function statusTableListing(table: StatusTable): NftListing {
  const base = { family: tableFamily, table: tableName };
  const objects: NftListing['nftables'] = [];
  for (const [name, elem] of Object.entries(table.elements)) {
    objects.push(table.maps.includes(name) ? ({ map: { ...base, name, type: '', map: '', elem } } as unknown as NftObject) : ({ set: { ...base, name, type: '', elem } } as unknown as NftObject));
  }
  for (const rule of table.rules) {
    objects.push({ rule: { ...base, chain: rule.chain, expr: rule.counter ? [{ counter: rule.counter }] : [], ...(rule.comment !== undefined ? { comment: rule.comment } : {}) } });
  }
  return { nftables: objects };
}

/** What both of status's reads hold besides elements: the table's objects by name and its rules' chains. */
export type TableNames = Pick<StatusTable, 'chains' | 'sets' | 'maps'> & { rules: readonly { chain: string }[] };

/**
 * What status compares however it read the table (docs/operations.md, "status"): every chain,
 * map and set by name (the generation marker among them; anything not declared is reported)
 * and the number of rules in each chain. `elementProblems` compares one map or set's elements;
 * undefined: not a simple mappings' map or set, its elements left to the full comparison.
 */
export function compareTableObjects(document: NftDocument, table: TableNames | null, elementProblems: (name: string, body: Record<string, unknown>) => string[] | undefined): string[] {
  const declared = document.nftables.flatMap((c) => ('add' in c ? [c.add as unknown as AnyObject] : []));
  const wanted = contentsOf(declared);
  const problems: string[] = [];
  const live = new Set([...(table?.chains ?? []).map((n) => `chain ${n}`), ...(table?.sets ?? []).map((n) => `set ${n}`), ...(table?.maps ?? []).map((n) => `map ${n}`)]);
  const ruleCounts = new Map<string, number>();
  for (const rule of table?.rules ?? []) ruleCounts.set(rule.chain, (ruleCounts.get(rule.chain) ?? 0) + 1);
  for (const [name, body] of wanted.objects) {
    if (!name.startsWith('chain ') && !name.startsWith('set ') && !name.startsWith('map ')) continue;
    if (!live.has(name)) {
      problems.push(`${name} is missing`);
      continue;
    }
    if (name.startsWith('chain ')) {
      const [held, rules] = [ruleCounts.get(String(body.name)) ?? 0, wanted.rules.get(String(body.name))?.length ?? 0];
      if (held !== rules) problems.push(`${name} has ${held} rules, expected ${rules}`);
      continue;
    }
    problems.push(...(elementProblems(name, body) ?? []));
  }
  for (const name of live) if (!wanted.objects.has(name)) problems.push(`${name} is not declared`);
  return problems;
}

/**
 * status's comparison of a status table with a batch: compareTableObjects, and every element of
 * the maps and sets holding simple mappings, compared as verify compares them. Rule contents,
 * base chain settings and the elements of the small dispatch maps are compared by the full
 * comparison (`apply --verify-full`), which lists the table.
 */
export function compareStatusTable(document: NftDocument, table: StatusTable | null): string[] {
  return compareTableObjects(document, table, (name, body) => {
    const elements = table?.elements[String(body.name)];
    if (!elements) return undefined;
    const wantedElements = Array.isArray(body.elem) ? (body.elem as unknown[]) : [];
    const problems: string[] = [];
    if (elements.length !== wantedElements.length) problems.push(`${name} has ${elements.length} elements, expected ${wantedElements.length}`);
    for (const element of missingElements(wantedElements, elements)) problems.push(`${name} element missing or different: ${display(element)}`);
    return problems;
  });
}

/**
 * The counters countersOf would find in statusTableListing(table), read from the table as it
 * is: no listing is built around its elements.
 */
export function countersOfTable(table: StatusTable): Pick<LiveState, 'counters' | 'blocked'> {
  const { counters, entry } = countersTable();
  const blocked: LiveState['blocked'] = [];
  const elements = new ElementCounters(entry);
  for (const [name, list] of Object.entries(table.elements)) for (const element of list) elements.element(name, element);
  elements.finish();
  for (const rule of table.rules) if (rule.counter) ruleCounters(rule.chain, rule.counter, rule.comment, entry, blocked);
  return { counters: [...counters.values()], blocked };
}
