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

interface Shape {
  chains: Map<string, number>;
  maps: Map<string, number>;
  /** Every map element as text ("map key => verdict"), sorted. */
  elements: string[];
}

function shapeOfObjects(objects: NftObject[]): Shape {
  const shape: Shape = { chains: new Map(), maps: new Map(), elements: [] };
  for (const object of objects) {
    if ('chain' in object) shape.chains.set(object.chain.name, shape.chains.get(object.chain.name) ?? 0);
    else if ('rule' in object) shape.chains.set(object.rule.chain, (shape.chains.get(object.rule.chain) ?? 0) + 1);
    else if ('map' in object) {
      const elem = object.map.elem ?? [];
      shape.maps.set(object.map.name, (shape.maps.get(object.map.name) ?? 0) + elem.length);
      for (const [key, verdict] of elem) shape.elements.push(`${object.map.name} ${JSON.stringify(key)} => ${JSON.stringify(verdict)}`);
    }
  }
  shape.elements.sort();
  return shape;
}

/** Compares chains, rule counts and map sizes of a batch with a listing. */
export function compareShapes(document: NftDocument, listing: NftListing | null): string[] {
  const wanted = shapeOfObjects(document.nftables.flatMap((c) => ('add' in c ? [c.add] : [])).filter((o) => !('table' in o)));
  const live: Shape = listing ? shapeOfObjects(objectsOf(listing)) : { chains: new Map(), maps: new Map(), elements: [] };
  const problems: string[] = [];
  for (const [kind, want, have] of [['chain', wanted.chains, live.chains], ['map', wanted.maps, live.maps]] as const) {
    const unit = kind === 'chain' ? 'rules' : 'elements';
    for (const [name, count] of want) {
      const found = have.get(name);
      if (found === undefined) problems.push(`${kind} ${name} is missing`);
      else if (found !== count) problems.push(`${kind} ${name} has ${found} ${unit}, expected ${count}`);
    }
    for (const name of have.keys()) if (!want.has(name)) problems.push(`${kind} ${name} is not declared`);
  }
  // Same sizes are not enough: every dispatch entry must send the same key to the same chain.
  if (!problems.length) {
    const held = new Set(live.elements);
    for (const element of wanted.elements) if (!held.has(element)) problems.push(`map element missing or different: ${element}`);
  }
  return problems;
}

const stripHandle = <T extends object>(value: T): T => {
  const { handle: _handle, ...rest } = value as T & { handle?: number };
  return rest as T;
};

/** A listing as a batch that recreates it exactly: chains, then maps with their elements (which jump to chains), then rules (see render.ts). */
export function listingToBatch(listing: NftListing | null): NftDocument {
  const table = { family: tableFamily, name: tableName };
  const commands: NftCommand[] = [{ add: { table } }, { delete: { table } }];
  if (!listing) return { nftables: commands };
  const objects = objectsOf(listing);
  if (!objects.some((o) => 'table' in o)) return { nftables: commands };
  commands.push({ add: { table } });
  for (const object of objects) if ('chain' in object) commands.push({ add: { chain: stripHandle(object.chain) } });
  for (const object of objects) if ('map' in object) commands.push({ add: { map: stripHandle(object.map) } });
  for (const object of objects) if ('rule' in object) commands.push({ add: { rule: stripHandle(object.rule) } });
  return { nftables: commands };
}
