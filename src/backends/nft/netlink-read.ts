// What `status` needs of natctl's table, read straight over nf_tables netlink (the `netlink`
// npm package's raw socket, NETLINK_NETFILTER): the names of its chains, maps and sets, each
// rule's chain, counter and comment, and every element of the maps and sets that hold simple
// mappings, with its counter and comment. nft 1.0.6 takes ~2 s and ~280 MB to list 50,000
// counted elements (its cache and JSON tree); the kernel's dump of them takes ~0.4 s and a few
// MB here (docs/performance.md, "Reading the ruleset back"). Read-only: nothing is ever sent
// but dump requests. A netlink socket belongs to the namespace of the process that opens it,
// so with a namespace the same code runs in a worker started there (netlink-read-worker.ts).
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { canEnterNetns, inNetns } from '../../host/netns.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bigToIp, ipToBig } from '../../config/addr.js';
import type { Runner } from '../exec.js';
import { tableName } from './render.js';

/** One rule as status needs it: its chain, its counter (the first one) and its comment. */
export interface RawRule {
  chain: string;
  counter?: { packets: number; bytes: number };
  comment?: string;
}

/** An element of a simple mapping's map or set, as nft's JSON lists it (key, and for a map its data). */
export type RawElement = unknown;

export interface RawTable {
  chains: string[];
  /** Named sets (the generation marker, the forward sets) and maps, by name. */
  sets: string[];
  maps: string[];
  rules: RawRule[];
  /** Elements of the simple mappings' maps and sets (dnat4, fwd4_tcp, ...), nft JSON form. */
  elements: Record<string, RawElement[]>;
}

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETSET = 10;
const NFT_MSG_GETSETELEM = 13;
const NLM_F_DUMP = 0x300;
const NFPROTO_INET = 1;
const NLA_TYPE_MASK = 0x3fff;

/** Attributes of a netlink payload (after `offset`), by type; later duplicates are kept in order by `all`. */
function attributes(data: Buffer, offset = 0): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let at = offset;
  while (at + 4 <= data.length) {
    const length = data.readUInt16LE(at);
    if (length < 4 || at + length > data.length) break;
    const type = data.readUInt16LE(at + 2) & NLA_TYPE_MASK;
    const value = data.subarray(at + 4, at + length);
    const list = out.get(type);
    if (list) list.push(value);
    else out.set(type, [value]);
    at += (length + 3) & ~3;
  }
  return out;
}

const first = (attrs: Map<number, Buffer[]>, type: number): Buffer | undefined => attrs.get(type)?.[0];
const text = (value: Buffer | undefined): string | undefined => {
  if (!value) return undefined;
  const end = value.indexOf(0);
  return value.toString('utf8', 0, end < 0 ? value.length : end);
};
const u64 = (value: Buffer | undefined): number => (value && value.length >= 8 ? Number(value.readBigUInt64BE(0)) : 0);

/** A comment in libnftnl's user data (type-length-value, comment type 0, NUL-terminated). */
function udataComment(value: Buffer | undefined): string | undefined {
  if (!value) return undefined;
  let at = 0;
  while (at + 2 <= value.length) {
    const [type, length] = [value[at]!, value[at + 1]!];
    if (type === 0) return text(value.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return undefined;
}

/** The counter among an expression list (NFTA_EXPR_NAME "counter", NFTA_COUNTER_BYTES 1, NFTA_COUNTER_PACKETS 2). */
function counterOf(expressions: Buffer[]): { packets: number; bytes: number } | undefined {
  for (const expression of expressions) {
    const attrs = attributes(expression);
    if (text(first(attrs, 1)) !== 'counter') continue;
    const data = attributes(first(attrs, 2) ?? Buffer.alloc(0));
    return { packets: u64(first(data, 2)), bytes: u64(first(data, 1)) };
  }
  return undefined;
}

const protocols: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
type Field = 'ip4' | 'ip6' | 'proto' | 'port';
const fieldSize: Record<Field, number> = { ip4: 4, ip6: 16, proto: 1, port: 2 };

/**
 * Values of a key or data at [start, end) of `buffer` (a concatenation pads each field to 4
 * bytes, as nft lays out registers); undefined when the length does not fit the layout.
 */
function decodeFields(buffer: Buffer, start: number, end: number, fields: Field[]): (string | number)[] | undefined {
  const padded = fields.length > 1;
  const out: (string | number)[] = [];
  let at = start;
  for (const field of fields) {
    const size = fieldSize[field];
    if (at + size > end) return undefined;
    if (field === 'ip4') out.push(`${buffer[at]}.${buffer[at + 1]}.${buffer[at + 2]}.${buffer[at + 3]}`);
    else if (field === 'ip6') out.push(bigToIp(BigInt(`0x${buffer.toString('hex', at, at + size)}`), 6));
    else if (field === 'proto') out.push(protocols[buffer[at]!] ?? buffer[at]!);
    else out.push(buffer.readUInt16BE(at));
    at += padded ? (size + 3) & ~3 : size;
  }
  return at === end ? out : undefined;
}

/** Key and data layouts of the maps and sets holding simple mappings (docs/ruleset.md), by name. */
export function simpleLayout(name: string): { key: Field[]; data?: Field[] } | undefined {
  const dnat = /^dnat([46])(_addr)?$/.exec(name);
  if (dnat) {
    const ip: Field = dnat[1] === '4' ? 'ip4' : 'ip6';
    return { key: dnat[2] ? [ip, 'proto', 'port'] : ['proto', 'port'], data: [ip, 'port'] };
  }
  const fwd = /^fwd([46])_[a-z]+(_addr)?$/.exec(name);
  if (fwd) return { key: fwd[2] ? [fwd[1] === '4' ? 'ip4' : 'ip6', 'port'] : ['port'] };
  return undefined;
}

const valueOf = (values: (string | number)[]): unknown => (values.length === 1 ? values[0] : { concat: values });

/** Calls `each(type, start, end)` for every attribute in [start, end) of `buffer`, in place. */
function eachAttribute(buffer: Buffer, start: number, end: number, each: (type: number, from: number, to: number) => void): void {
  let at = start;
  while (at + 4 <= end) {
    const length = buffer.readUInt16LE(at);
    if (length < 4 || at + length > end) return;
    each(buffer.readUInt16LE(at + 2) & NLA_TYPE_MASK, at + 4, at + length);
    at += (length + 3) & ~3;
  }
}

/** [start, end) of the first attribute of `type` in [start, end), or undefined. */
function findAttribute(buffer: Buffer, start: number, end: number, type: number): [number, number] | undefined {
  let found: [number, number] | undefined;
  eachAttribute(buffer, start, end, (t, from, to) => {
    if (found === undefined && t === type) found = [from, to];
  });
  return found;
}

/** A counter expression at [start, end) (NFTA_EXPR_NAME "counter"; NFTA_COUNTER_BYTES 1, _PACKETS 2), else undefined. */
function counterAt(buffer: Buffer, start: number, end: number): { packets: number; bytes: number } | undefined {
  const name = findAttribute(buffer, start, end, 1);
  if (!name || buffer.toString('latin1', name[0], name[1]) !== 'counter\0') return undefined;
  const data = findAttribute(buffer, start, end, 2);
  const counter = { packets: 0, bytes: 0 };
  if (data) {
    eachAttribute(buffer, data[0], data[1], (type, from, to) => {
      if (to - from < 8) return;
      if (type === 1) counter.bytes = Number(buffer.readBigUInt64BE(from));
      else if (type === 2) counter.packets = Number(buffer.readBigUInt64BE(from));
    });
  }
  return counter;
}

function strictCounter(counter: { packets: number; bytes: number } | undefined, strict: boolean, setName: string): { packets: number; bytes: number } | undefined {
  if (!counter && strict) throw new Error(`${setName}: an element carries an expression other than a counter`);
  return counter;
}

/**
 * One element at [start, end) as nft 1.0.6's JSON lists it: {"elem": {"val", "comment",
 * "counter"}}, and [that, data] in a map. Read in place, without copying attributes.
 */
function decodeElement(buffer: Buffer, start: number, end: number, layout: { key: Field[]; data?: Field[] }, setName: string, strict = false, keys?: string[]): RawElement {
  let key: (string | number)[] | undefined;
  let data: (string | number)[] | undefined;
  let comment: string | undefined;
  let counter: { packets: number; bytes: number } | undefined;
  eachAttribute(buffer, start, end, (type, from, to) => {
    if (type === 1 || type === 2) {
      // NFTA_SET_ELEM_KEY / _DATA, each holding NFTA_DATA_VALUE (1).
      const value = findAttribute(buffer, from, to, 1);
      const fields = type === 1 ? layout.key : layout.data;
      const decoded = value && fields ? decodeFields(buffer, value[0], value[1], fields) : undefined;
      if (!decoded) throw new Error(`${setName}: an element's ${type === 1 ? 'key' : 'data'} (${buffer.toString('hex', from, to)}) is not ${(fields ?? []).join(' . ')}`);
      if (type === 1) {
        key = decoded;
        // nft sorts a listing's elements by value: one field as a number, a concatenation as one
        // host-order (little-endian) number, so by its bytes read from the last (nft 1.0.6).
        const bytes = buffer.toString('latin1', value![0], value![1]);
        keys?.push(fields!.length > 1 ? [...bytes].reverse().join('') : bytes);
      } else data = decoded;
    } else if (type === 6) comment = udataComment(buffer.subarray(from, to));
    else if (type === 7) counter ??= strictCounter(counterAt(buffer, from, to), strict, setName);
    else if (type === 11) eachAttribute(buffer, from, to, (_t, f, t) => void (counter ??= strictCounter(counterAt(buffer, f, t), strict, setName)));
    // Strict (verify's read-back): anything nft would list that this does not decode (flags,
    // timeouts, object references, other expressions) makes the caller list with nft instead.
    else if (strict) throw new Error(`${setName}: an element carries attribute ${type}, not read over netlink`);
  });
  if (!key) throw new Error(`${setName}: an element without a key`);
  const elem: Record<string, unknown> = { val: valueOf(key) };
  if (comment !== undefined) elem.comment = comment;
  if (counter) elem.counter = counter;
  if (!layout.data) return { elem };
  if (!data) throw new Error(`${setName}: an element without data`);
  return [{ elem }, valueOf(data)];
}

/**
 * The elements of one NFT_MSG_NEWSETELEM message of a dump (struct nfgenmsg, then
 * NFTA_SET_ELEM_LIST_TABLE 1, _SET 2, _ELEMENTS 3: a list of NFTA_LIST_ELEM 1) of the simple
 * mappings' map or set `name`, as nft's JSON lists them.
 */
export function decodeElementMessage(data: Buffer, name: string, strict = false, keys?: string[]): RawElement[] {
  const layout = simpleLayout(name);
  if (!layout) throw new Error(`internal: ${name} holds no simple mappings`);
  const out: RawElement[] = [];
  eachAttribute(data, 4, data.length, (type, from, to) => {
    if (type !== 3) return;
    eachAttribute(data, from, to, (t, f, e) => void (t === 1 && out.push(decodeElement(data, f, e, layout, name, strict, keys))));
  });
  return out;
}

interface Message { type: number; data: Buffer }
interface Socket {
  request(type: number, data: Uint8Array, options: { flags: number }): Promise<[Message[], unknown]>;
  close(): void;
}

const attribute = (type: number, value: Buffer): Buffer => {
  const length = 4 + value.length;
  const out = Buffer.alloc((length + 3) & ~3);
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
};
const cString = (value: string): Buffer => Buffer.from(`${value}\0`);
/** struct nfgenmsg (family inet, version 0, resource id 0), then the attributes. */
const request = (...attrs: Buffer[]): Buffer => Buffer.concat([Buffer.from([NFPROTO_INET, 0, 0, 0]), ...attrs]);

/**
 * Opens a raw NETLINK_NETFILTER socket in this process's namespace. Dumps go into big
 * messages: the kernel sizes a dump's messages by the reader's buffer, and it walks a hash
 * set from its start again for every message, so 4 KB messages made dumping 50,000 elements
 * 10x slower here.
 */
function openSocket(netns?: string): Socket {
  const require = createRequire(import.meta.url);
  const { createNetlink } = require('netlink') as { createNetlink: (protocol: number, options: Record<string, unknown>) => Socket };
  // Inside a namespace: created there by the addon's withNetns (src/host/netns.ts), no process.
  return inNetns(netns, () => createNetlink(NETLINK_NETFILTER, { recvBufferSize: 4 << 20, messagePeeking: false, msgBufferSize: 64 << 10 }));
}

async function dump(socket: Socket, type: number, payload: Buffer): Promise<Map<number, Buffer[]>[]> {
  const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | type, payload, { flags: NLM_F_DUMP });
  return messages.map((message) => attributes(message.data, 4));
}

/** The ruleset's generation id (NFT_MSG_GETGEN 16, NFTA_GEN_ID 1): it changes with every commit. */
async function rulesetGeneration(socket: Socket): Promise<number> {
  const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | 16, request(), { flags: 0 });
  const id = messages[0] ? first(attributes(messages[0].data, 4), 1) : undefined;
  if (!id || id.length < 4) throw new Error('the kernel did not say which ruleset generation it holds');
  return id.readUInt32BE(0);
}

/** Reads natctl's table (null: the kernel holds none) in this process's namespace, or in `netns` through the addon. */
export async function readRawTable(netns?: string): Promise<RawTable | null> {
  const elements: Record<string, RawElement[]> = {};
  const table = await readRawTableInto((name, decoded) => {
    const list = (elements[name] ??= []);
    for (const element of decoded) list.push(element);
  }, netns);
  // A dump that overlapped a resize of a hash table came back with a key twice (dumpOrder):
  // thrown, so that the caller reads through nft instead of reporting drift that is not there.
  for (const [name, list] of Object.entries(elements)) dumpOrder(name, list.map((e) => JSON.stringify(Array.isArray(e) ? (e[0] as { elem?: { val?: unknown } }).elem?.val : (e as { elem?: { val?: unknown } }).elem?.val)));
  return table && { ...table, elements };
}

/**
 * readRawTable, handing each dump message's elements to `sink` as they are decoded (by set
 * name, every simple mappings' set at least once) instead of keeping them: the worker prints
 * them as they come, so its memory stays that of one message.
 */
export async function readRawTableInto(sink: (name: string, elements: RawElement[]) => void, netns?: string): Promise<Omit<RawTable, 'elements'> | null> {
  const socket = openSocket(netns);
  try {
    const table = cString(tableName);
    const generation = await rulesetGeneration(socket);
    // NFTA_CHAIN_TABLE, NFTA_SET_TABLE, NFTA_RULE_TABLE are 1, NFTA_*_NAME 3 / 2 (chain, set).
    const chains = (await dump(socket, NFT_MSG_GETCHAIN, request(attribute(1, table))))
      .filter((a) => text(first(a, 1)) === tableName)
      .map((a) => text(first(a, 3)) ?? '');
    // NFTA_SET_NAME 2, NFTA_SET_FLAGS 3 (u32, big-endian; NFT_SET_ANONYMOUS 0x2, NFT_SET_MAP 0x8).
    // Anonymous sets (`{ 80, 443 }` in a rule, listed as __set0, ...) belong to their rules.
    const flags = (a: Map<number, Buffer[]>): number => first(a, 3)?.readUInt32BE(0) ?? 0;
    const setsAndMaps = (await dump(socket, NFT_MSG_GETSET, request(attribute(1, table)))).filter((a) => text(first(a, 1)) === tableName && (flags(a) & 0x2) === 0);
    const isMap = (a: Map<number, Buffer[]>): boolean => (flags(a) & 0x8) !== 0;
    const sets = setsAndMaps.filter((a) => !isMap(a)).map((a) => text(first(a, 2)) ?? '');
    const maps = setsAndMaps.filter(isMap).map((a) => text(first(a, 2)) ?? '');
    if (!chains.length && !setsAndMaps.length) {
      // An empty table and no table look alike in these dumps: the rule dump tells them apart.
      const probe = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | 1, request(attribute(1, table)), { flags: 0 }).then(() => true, () => false);
      if (!probe) return null;
    }
    const rules = (await dump(socket, NFT_MSG_GETRULE, request(attribute(1, table))))
      .filter((a) => text(first(a, 1)) === tableName)
      .map((a): RawRule => {
        const rule: RawRule = { chain: text(first(a, 2)) ?? '' };
        const counter = counterOf([...attributes(first(a, 4) ?? Buffer.alloc(0)).values()].flat());
        if (counter) rule.counter = counter;
        const comment = udataComment(first(a, 7));
        if (comment !== undefined) rule.comment = comment;
        return rule;
      });
    for (const name of [...maps, ...sets]) {
      if (!simpleLayout(name)) continue;
      sink(name, []);
      const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, request(attribute(1, table), attribute(2, cString(name))), { flags: NLM_F_DUMP });
      for (let i = 0; i < messages.length; i++) {
        sink(name, decodeElementMessage(messages[i]!.data, name));
        messages[i] = undefined as unknown as Message; // this message's buffer may go now
      }
    }
    // Several dumps are not one snapshot: a ruleset committed in between (an apply running now)
    // would mix two generations. nft retries in that case; the caller falls back to nft.
    if ((await rulesetGeneration(socket)) !== generation) throw new Error('the ruleset changed while status read it');
    return { chains, sets, maps, rules };
  } finally {
    socket.close();
  }
}

/** What verify's read-back of a big table takes over netlink (readElements). */
export interface ElementsRead {
  /** The ruleset generation the dumps saw (the same before and after them). */
  generation: number;
  /** Every element of the simple mappings' maps and sets, as nft's JSON lists them, by name. */
  elements: Record<string, RawElement[]>;
  /** Other named maps and sets of the table that hold elements (their elements are not read here). */
  othersWithElements: string[];
}

/**
 * The elements of natctl's table's named maps and sets (null: no table, or no set in it), for
 * verify's read-back of a big table (docs/performance.md, "Reading the ruleset back"): the simple mappings' maps
 * and sets decoded strictly (anything nft would list that is not decoded here throws, and the
 * caller lists with nft), the others only checked for holding any element.
 */
/**
 * The positions of a dump's elements in the order nft lists them (by their sort keys). Throws
 * when a key came twice: the kernel resized the hash table between two messages of the dump
 * (each message walks it again from the start, and rhashtable grows in deferred work right
 * after a big load), so as many keys were missed; the caller reads again or lists through nft.
 */
export function dumpOrder(name: string, keys: readonly string[]): number[] {
  const order = keys.map((_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
  for (let i = 1; i < order.length; i++) {
    if (keys[order[i]!] === keys[order[i - 1]!]) throw new Error(`${name} changed shape while it was dumped (a key came twice)`);
  }
  return order;
}

export async function readElements(netns?: string, minimum = 0): Promise<ElementsRead | null> {
  const socket = openSocket(netns);
  try {
    const table = cString(tableName);
    const generation = await rulesetGeneration(socket);
    const flags = (a: Map<number, Buffer[]>): number => first(a, 3)?.readUInt32BE(0) ?? 0;
    const names = (await dump(socket, NFT_MSG_GETSET, request(attribute(1, table))))
      .filter((a) => text(first(a, 1)) === tableName && (flags(a) & 0x2) === 0)
      .map((a) => text(first(a, 2)) ?? '');
    if (!names.length) return null;
    const elements: Record<string, RawElement[]> = {};
    const othersWithElements: string[] = [];
    // The simple mappings' sets first: below `minimum` elements the caller lists in full anyway.
    const simpleFirst = [...names.filter((n) => simpleLayout(n)), ...names.filter((n) => !simpleLayout(n))];
    let count = 0;
    for (const name of simpleFirst) {
      if (!simpleLayout(name) && count < minimum) break;
      const simple = simpleLayout(name) !== undefined;
      const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, request(attribute(1, table), attribute(2, cString(name))), { flags: NLM_F_DUMP });
      const list: RawElement[] = [];
      const keys: string[] = [];
      for (let i = 0; i < messages.length; i++) {
        const data = messages[i]!.data;
        if (simple) {
          for (const element of decodeElementMessage(data, name, true, keys)) list.push(element);
        } else if (first(attributes(data, 4), 3)?.length) {
          othersWithElements.push(name);
          break;
        }
        messages[i] = undefined as unknown as Message; // this message's buffer may go now
      }
      // In the order nft lists them (sorted by value; the dump follows the hash table), so that
      // two reads of the same elements normalize alike, whichever way each was read.
      count += list.length;
      if (simple) elements[name] = dumpOrder(name, keys).map((i) => list[i]);
    }
    if ((await rulesetGeneration(socket)) !== generation) throw new Error('the ruleset changed while it was read');
    return { generation, elements, othersWithElements };
  } finally {
    socket.close();
  }
}

/** The ruleset generation id the kernel holds now (it changes with every commit). */
export async function readGeneration(netns?: string): Promise<number> {
  const socket = openSocket(netns);
  try {
    return await rulesetGeneration(socket);
  } finally {
    socket.close();
  }
}

/**
 * How verify's read-back reaches netlink through `runner`: in this process only (no namespace,
 * or the addon enters it); undefined otherwise, and read() lists with nft.
 */
export interface ElementsReader {
  /** readElements; below `minimum` simple mappings' elements, the other sets are not looked at. */
  elements: (minimum?: number) => Promise<ElementsRead | null>;
  generation: () => Promise<number>;
}

export function elementsReader(runner: Runner): ElementsReader | undefined {
  if (runner.netns !== undefined && !canEnterNetns()) return undefined;
  return { elements: (minimum) => readElements(runner.netns, minimum), generation: () => readGeneration(runner.netns) };
}

const here = dirname(fileURLToPath(import.meta.url));
// Loaded from src/ (tests run TypeScript directly), the worker still runs from the build.
const workerScript = import.meta.url.endsWith('.ts') ? join(here, '../../../dist/backends/nft/netlink-read-worker.js') : join(here, 'netlink-read-worker.js');

/**
 * How status reads the table over netlink through `runner`: in this process without a
 * namespace or when the addon can enter it, else in a worker started in it (one process per
 * read). Rejects when the `netlink` addon cannot load or the worker fails; the caller then
 * lists with nft.
 */
export function rawTableReader(runner: Runner): () => Promise<RawTable | null> {
  if (runner.netns === undefined) return () => readRawTable();
  if (canEnterNetns()) return () => readRawTable(runner.netns);
  return async () => {
    const result = await runner.run(process.execPath, [workerScript]);
    if (result.exitCode !== 0) throw new Error(result.stderr.trim() || 'the netlink reader failed');
    const { elements, table } = JSON.parse(result.stdout) as { elements: Record<string, RawElement[]>; table: Omit<RawTable, 'elements'> | null };
    return table && { ...table, elements };
  };
}

const protocolNumbers: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };

/**
 * The key of an element of a simple mappings' map or set as the kernel holds it (the layout of
 * simpleLayout; each field of a concatenation padded to 4 bytes); undefined when `values` do
 * not fit the layout.
 */
export function encodeKey(name: string, values: readonly (string | number)[]): Buffer | undefined {
  const fields = simpleLayout(name)?.key;
  if (!fields || fields.length !== values.length) return undefined;
  const padded = fields.length > 1;
  const parts: Buffer[] = [];
  for (let i = 0; i < fields.length; i++) {
    const [field, value] = [fields[i]!, values[i]!];
    let bytes: Buffer;
    if (field === 'port' && typeof value === 'number') {
      bytes = Buffer.alloc(2);
      bytes.writeUInt16BE(value, 0);
    } else if (field === 'proto' && typeof value === 'string' && protocolNumbers[value] !== undefined) {
      bytes = Buffer.from([protocolNumbers[value]!]);
    } else if ((field === 'ip4' || field === 'ip6') && typeof value === 'string') {
      const hex = ipToBig(value).toString(16).padStart(field === 'ip4' ? 8 : 32, '0');
      bytes = Buffer.from(hex, 'hex');
      if (bytes.length !== fieldSize[field]) return undefined;
    } else {
      return undefined;
    }
    parts.push(padded ? Buffer.concat([bytes, Buffer.alloc(((bytes.length + 3) & ~3) - bytes.length)]) : bytes);
  }
  return Buffer.concat(parts);
}

/** Lookup sockets kept per namespace (by its inode) while calls keep coming; see getElements. */
const lookupSockets = new Map<string, { id: string; socket: Socket; timer?: NodeJS.Timeout }>();
const lookupIdleMs = 10_000;

function lookupSocket(netns: string | undefined): Socket {
  // A namespace deleted and created again under the same name is another inode: a new socket.
  const id = netns === undefined ? '' : `${netns}:${statSync(`/run/netns/${netns}`).ino}`;
  const key = netns ?? '';
  let kept = lookupSockets.get(key);
  if (kept?.id !== id) {
    kept?.socket.close();
    kept = { id, socket: openSocket(netns) };
    lookupSockets.set(key, kept);
  }
  if (kept.timer) clearTimeout(kept.timer);
  const entry = kept;
  entry.timer = setTimeout(() => {
    entry.socket.close();
    if (lookupSockets.get(key) === entry) lookupSockets.delete(key);
  }, lookupIdleMs).unref();
  return entry.socket;
}

/**
 * Reads single elements of simple mappings' maps and sets by key (NFT_MSG_GETSETELEM without
 * NLM_F_DUMP: the kernel looks each key up and answers it, or ENOENT), in `netns` through the
 * addon. A read, unlike nft 1.0.6's `get element`, which dumps the whole map first. Each
 * answer is the element as nft's JSON lists it, or undefined when the kernel does not hold
 * the key. The socket is kept while calls keep coming (closed after 10 s idle): closing a
 * NETLINK_NETFILTER socket right after a commit that deleted something waits for the
 * kernel's deferred destroy work (an RCU grace period, 5-15 ms here), which every delta
 * would pay since it deletes the old marker.
 */
export async function getElements(netns: string | undefined, lookups: { set: string; key: Buffer }[]): Promise<(RawElement | undefined)[]> {
  const socket = lookupSocket(netns);
  try {
    return await lookUp(socket, lookups);
  } catch (error) {
    // A socket that failed is not kept.
    socket.close();
    lookupSockets.delete(netns ?? '');
    throw error;
  }
}

async function lookUp(socket: Socket, lookups: { set: string; key: Buffer }[]): Promise<(RawElement | undefined)[]> {
  const out: (RawElement | undefined)[] = [];
  const table = cString(tableName);
  for (const { set, key } of lookups) {
    const element = attribute(1 | 0x8000, attribute(1 | 0x8000, attribute(1, key)));
    const payload = request(attribute(1, table), attribute(2, cString(set)), attribute(3 | 0x8000, element));
    const answer = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, payload, { flags: 0 }).then(
      ([messages]) => messages,
      (error: Error) => {
        if (/ENOENT/.test(error.message)) return undefined;
        throw error;
      },
    );
    out.push(answer?.[0] ? decodeElementMessage(answer[0].data, set)[0] : undefined);
  }
  return out;
}

/**
 * Which of the named sets natctl's table holds (NFT_MSG_GETSET without NLM_F_DUMP: the kernel
 * looks the name up, or ENOENT), in `netns` through the addon, on the socket getElements keeps:
 * the generation marker check (NftBackend.holds) without nft's cache or a process.
 */
export async function hasSets(netns: string | undefined, names: readonly string[]): Promise<boolean[]> {
  const socket = lookupSocket(netns);
  const table = cString(tableName);
  try {
    return await Promise.all(names.map((name) =>
      socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSET, request(attribute(1, table), attribute(2, cString(name))), { flags: 0 }).then(
        ([messages]) => messages.length > 0,
        (error: Error) => {
          if (/ENOENT/.test(error.message)) return false;
          throw error;
        },
      )));
  } catch (error) {
    socket.close();
    lookupSockets.delete(netns ?? '');
    throw error;
  }
}
