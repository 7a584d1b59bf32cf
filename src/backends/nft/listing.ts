// Reading nft's JSON listing of natctl's table: normalizing it for comparisons, pulling
// out counters, comparing its shape with a batch, and turning it back into a batch.
import type { LiveState, MappingCounters } from '../backend.js';
import type { NftCommand, NftDocument, NftListing, NftObject } from './json.js';
import { tableFamily, tableName } from './render.js';

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

export function liveStateOf(listing: NftListing, raw: string): LiveState {
  const counters = new Map<string, MappingCounters>();
  const blocked: LiveState['blocked'] = [];
  const entry = (name: string): MappingCounters => {
    let found = counters.get(name);
    if (!found) {
      found = { name, description: '', connections: 0, packets: 0, bytes: 0 };
      counters.set(name, found);
    }
    return found;
  };
  for (const object of objectsOf(listing)) {
    if (!('rule' in object)) continue;
    const { chain, expr, comment } = object.rule;
    const count = counterOf(expr);
    if (!count) continue;
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
  return { raw, normalized: normalizeListing(listing), counters: [...counters.values()], blocked };
}

/** Any object of a listing (chain, rule, map, set, counter, quota, flowtable, ...), keyed by its kind. */
type AnyObject = Record<string, Record<string, unknown>>;
const kindOf = (object: object): string => Object.keys(object)[0] ?? '';
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * One canonical text for an expression, whichever side wrote it. nft lists back what it was
 * given with a few rewrites (nft 1.0.6), undone here on both sides: an anonymous set of one
 * element is listed as the element, `in` on a set as `==`, set elements in its own order;
 * handles are dropped and counters zeroed.
 */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>).filter(([key]) => key !== 'handle').sort(([a], [b]) => byText(a, b));
  if (entries.length === 1 && entries[0]![0] === 'set' && Array.isArray(entries[0]![1])) {
    const items = (entries[0]![1] as unknown[]).map(canonical);
    if (items.length === 1) return items[0];
    return { set: items.map((item) => JSON.stringify(item)).sort(byText).map((text) => JSON.parse(text) as unknown) };
  }
  const out: Record<string, unknown> = {};
  for (const [key, child] of entries) {
    if (key === 'counter' && child !== null && typeof child === 'object' && !Array.isArray(child)) out[key] = { packets: 0, bytes: 0 };
    else if (key === 'op' && child === 'in') out[key] = '==';
    else if (key === 'elem' && Array.isArray(child)) out[key] = child.map((e) => JSON.stringify(canonical(e))).sort(byText);
    else out[key] = canonical(child);
  }
  return out;
}

const text = (value: unknown): string => JSON.stringify(canonical(value));
const short = (value: string): string => (value.length > 300 ? `${value.slice(0, 300)}...` : value);

interface Contents {
  /** Chains, maps, sets and every other named object: canonical definition (without elements) by "kind name". */
  objects: Map<string, string>;
  /** Rules of each chain, in order, canonical. */
  rules: Map<string, string[]>;
  /** Elements of each map or set, canonical, sorted. */
  elements: Map<string, string[]>;
}

function contentsOf(objects: AnyObject[]): Contents {
  const contents: Contents = { objects: new Map(), rules: new Map(), elements: new Map() };
  for (const object of objects) {
    const kind = kindOf(object);
    const body = object[kind]!;
    if (kind === 'table') continue;
    if (kind === 'rule') {
      const chain = String(body.chain);
      const list = contents.rules.get(chain) ?? [];
      list.push(text(body));
      contents.rules.set(chain, list);
      continue;
    }
    const { elem, ...definition } = body;
    const name = `${kind} ${String(body.name)}`;
    contents.objects.set(name, text(definition));
    if (kind === 'chain' && !contents.rules.has(String(body.name))) contents.rules.set(String(body.name), []);
    if (Array.isArray(elem)) contents.elements.set(name, elem.map((e) => JSON.stringify(canonical(e))).sort(byText));
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
  for (const [name, definition] of wanted.objects) {
    const found = live.objects.get(name);
    if (found === undefined) problems.push(`${name} is missing`);
    else if (found !== definition) problems.push(`${name} differs: kernel holds ${short(found)}, expected ${short(definition)}`);
  }
  for (const name of live.objects.keys()) if (!wanted.objects.has(name)) problems.push(`${name} is not declared`);
  for (const [chain, rules] of wanted.rules) {
    const held = live.rules.get(chain);
    if (held === undefined) continue; // reported as a missing chain
    if (held.length !== rules.length) {
      problems.push(`chain ${chain} has ${held.length} rules, expected ${rules.length}`);
      continue;
    }
    rules.forEach((rule, index) => {
      if (held[index] !== rule) problems.push(`chain ${chain} rule ${index + 1} differs: kernel holds ${short(held[index]!)}, expected ${short(rule)}`);
    });
  }
  for (const chain of live.rules.keys()) if (!wanted.rules.has(chain) && !live.objects.has(`chain ${chain}`)) problems.push(`rules of undeclared chain ${chain}`);
  for (const [name, elements] of wanted.elements) {
    const held = live.elements.get(name) ?? [];
    if (!live.objects.has(name)) continue;
    if (held.length !== elements.length) problems.push(`${name} has ${held.length} elements, expected ${elements.length}`);
    // Same sizes are not enough: every dispatch entry must send the same key to the same chain.
    const have = new Set(held);
    for (const element of elements) if (!have.has(element)) problems.push(`${name} element missing or different: ${short(element)}`);
  }
  for (const [name, held] of live.elements) if (wanted.objects.has(name) && !wanted.elements.has(name) && held.length) problems.push(`${name} has ${held.length} elements, expected 0`);
  return problems;
}

/** Kinds natctl itself creates; anything else in its table was added by hand. */
const ownKinds = new Set(['table', 'chain', 'map', 'rule']);

/** Objects of a listing natctl did not create (named sets, counters, quotas, ...), as "kind name". */
export function foreignObjects(listing: NftListing | null): string[] {
  if (!listing) return [];
  return (objectsOf(listing) as unknown as AnyObject[]).filter((o) => !ownKinds.has(kindOf(o))).map((o) => `${kindOf(o)} ${String(o[kindOf(o)]!.name)}`);
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
