// What `status` needs of natctl's table, read straight over nf_tables netlink (the `netlink`
// npm package's raw socket, NETLINK_NETFILTER): the names of its chains, maps and sets, each
// rule's chain, counter and comment, and every element of the maps and sets that hold simple
// mappings, with its counter and comment. nft 1.0.6 takes ~2 s and ~280 MB to list 50,000
// counted elements (its cache and JSON tree); the kernel's dump of them takes ~0.4 s and a few
// MB here (docs/performance.md, "Reading the ruleset back"). Read-only: nothing is ever sent
// but dump requests. A netlink socket belongs to the namespace of the process that opens it,
// so with a namespace the same code runs in a worker started there (netlink-read-worker.ts).
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { canEnterNetns, inNetns } from '../../host/netns.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
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
  // Exactly as long as the layout: an array grown by push keeps room for 16 values, ~4x the
  // memory of two, for each of the 100,000 keys and data of 50,000 mappings.
  const out = new Array<string | number>(fields.length);
  let at = start;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    const size = fieldSize[field];
    if (at + size > end) return undefined;
    if (field === 'ip4') out[i] = ip4Text(buffer.readUInt32BE(at));
    else if (field === 'ip6') out[i] = bigToIp(BigInt(`0x${buffer.toString('hex', at, at + size)}`), 6);
    else if (field === 'proto') out[i] = protocols[buffer[at]!] ?? buffer[at]!;
    else out[i] = buffer.readUInt16BE(at);
    at += padded ? (size + 3) & ~3 : size;
  }
  return at === end ? out : undefined;
}

// One string per address, however many elements hold it (a read's worth; dropped when it grows big).
const ip4Texts = new Map<number, string>();
function ip4Text(value: number): string {
  let text = ip4Texts.get(value);
  if (text === undefined) {
    if (ip4Texts.size >= 65536) ip4Texts.clear();
    text = `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
    ip4Texts.set(value, text);
  }
  return text;
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

/** The values of a key of the simple mappings' map or set `name` held as `bytes` (latin1 text), for messages; undefined when they do not fit. */
export function decodeKeyText(name: string, bytes: string): (string | number)[] | undefined {
  const layout = simpleLayout(name);
  const buffer = Buffer.from(bytes, 'latin1');
  return layout ? decodeFields(buffer, 0, buffer.length, layout.key) : undefined;
}

const valueOf = (values: (string | number)[]): unknown => (values.length === 1 ? values[0] : { concat: values });

/** The bytes at [start, end) as latin1 text, last byte first. */
function reversedLatin1(buffer: Buffer, start: number, end: number): string {
  let text = '';
  for (let i = end - 1; i >= start; i--) text += String.fromCharCode(buffer[i]!);
  return text;
}

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
  let at = start;
  while (at + 4 <= end) {
    const length = buffer.readUInt16LE(at);
    if (length < 4 || at + length > end) return undefined;
    if ((buffer.readUInt16LE(at + 2) & NLA_TYPE_MASK) === type) return [at + 4, at + length];
    at += (length + 3) & ~3;
  }
  return undefined;
}

/** A u64 in network order at `at`, as a number (exact below 2^53, as Number(BigInt) is; rounded above). */
function u64At(buffer: Buffer, at: number): number {
  const high = buffer.readUInt32BE(at);
  return high < 0x200000 ? high * 0x100000000 + buffer.readUInt32BE(at + 4) : Number(buffer.readBigUInt64BE(at));
}

const counterName = Buffer.from('counter\0', 'latin1');

/** A counter expression at [start, end) (NFTA_EXPR_NAME "counter"; NFTA_COUNTER_BYTES 1, _PACKETS 2), else undefined. */
function counterAt(buffer: Buffer, start: number, end: number): { packets: number; bytes: number } | undefined {
  const name = findAttribute(buffer, start, end, 1);
  if (!name || buffer.compare(counterName, 0, counterName.length, name[0], name[1]) !== 0) return undefined;
  const data = findAttribute(buffer, start, end, 2);
  const counter = { packets: 0, bytes: 0 };
  if (data) {
    let at = data[0];
    while (at + 4 <= data[1]) {
      const length = buffer.readUInt16LE(at);
      if (length < 4 || at + length > data[1]) break;
      const type = buffer.readUInt16LE(at + 2) & NLA_TYPE_MASK;
      if (length - 4 >= 8) {
        if (type === 1) counter.bytes = u64At(buffer, at + 4);
        else if (type === 2) counter.packets = u64At(buffer, at + 4);
      }
      at += (length + 3) & ~3;
    }
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
  // The attributes walked in place (as eachAttribute does), without a closure per element.
  let at = start;
  while (at + 4 <= end) {
    const length = buffer.readUInt16LE(at);
    if (length < 4 || at + length > end) break;
    const type = buffer.readUInt16LE(at + 2) & NLA_TYPE_MASK;
    const from = at + 4;
    const to = at + length;
    at += (length + 3) & ~3;
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
        if (keys) keys.push(fields!.length > 1 ? reversedLatin1(buffer, value![0], value![1]) : buffer.toString('latin1', value![0], value![1]));
      } else data = decoded;
    } else if (type === 6) comment = udataComment(buffer.subarray(from, to));
    else if (type === 7) counter ??= strictCounter(counterAt(buffer, from, to), strict, setName);
    else if (type === 11) {
      let inner = from;
      while (inner + 4 <= to) {
        const size = buffer.readUInt16LE(inner);
        if (size < 4 || inner + size > to) break;
        counter ??= strictCounter(counterAt(buffer, inner + 4, inner + size), strict, setName);
        inner += (size + 3) & ~3;
      }
    }
    // Strict (verify's read-back): anything nft would list that this does not decode (flags,
    // timeouts, object references, other expressions) makes the caller list with nft instead.
    else if (strict) throw new Error(`${setName}: an element carries attribute ${type}, not read over netlink`);
  }
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
  const { createNetlink } = require('netlink/dist/netlink.js') as { createNetlink: (protocol: number, options: Record<string, unknown>) => Socket };
  // Inside a namespace: created there by the addon's withNetns (src/host/netns.ts), no process.
  return inNetns(netns, () => createNetlink(NETLINK_NETFILTER, { recvBufferSize: 4 << 20, messagePeeking: false, msgBufferSize: 64 << 10 }));
}

// NFTA_SET_NAME 2, NFTA_SET_FLAGS 3 (u32, big-endian; NFT_SET_ANONYMOUS 0x2, NFT_SET_MAP 0x8).
// Anonymous sets (`{ 80, 443 }` in a rule, listed as __set0, ...) belong to their rules.
const setFlags = (a: Map<number, Buffer[]>): number => first(a, 3)?.readUInt32BE(0) ?? 0;
const isAnonymous = (a: Map<number, Buffer[]>): boolean => (setFlags(a) & 0x2) !== 0;

/** The names of named sets and of maps, apart. */
function namesByKind(setsAndMaps: Map<number, Buffer[]>[]): { sets: string[]; maps: string[] } {
  const sets: string[] = [];
  const maps: string[] = [];
  for (const a of setsAndMaps) ((setFlags(a) & 0x8) !== 0 ? maps : sets).push(text(first(a, 2)) ?? '');
  return { sets, maps };
}

/** A rule as status shows it: its chain (NFTA_RULE_CHAIN 2), counter (in NFTA_RULE_EXPRESSIONS 4) and comment (NFTA_RULE_USERDATA 7). */
function rawRuleOf(a: Map<number, Buffer[]>): RawRule {
  const rule: RawRule = { chain: text(first(a, 2)) ?? '' };
  const counter = counterOf([...attributes(first(a, 4) ?? Buffer.alloc(0)).values()].flat());
  if (counter) rule.counter = counter;
  const comment = udataComment(first(a, 7));
  if (comment !== undefined) rule.comment = comment;
  return rule;
}

/** An empty table and no table look alike in the chain and set dumps: NFT_MSG_GETTABLE (1) of its name tells them apart. */
function tableExists(socket: Socket, table: Buffer): Promise<boolean> {
  return socket.request((NFNL_SUBSYS_NFTABLES << 8) | 1, request(attribute(1, table)), { flags: 0 }).then(() => true, () => false);
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
    const setsAndMaps = (await dump(socket, NFT_MSG_GETSET, request(attribute(1, table)))).filter((a) => text(first(a, 1)) === tableName && !isAnonymous(a));
    const { sets, maps } = namesByKind(setsAndMaps);
    if (!chains.length && !setsAndMaps.length && !(await tableExists(socket, table))) return null;
    const rules = (await dump(socket, NFT_MSG_GETRULE, request(attribute(1, table))))
      .filter((a) => text(first(a, 1)) === tableName)
      .map(rawRuleOf);
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
/** A dump that raced a hash-table resize or a commit: reading again may succeed (anything else will not). */
export class DumpRaceError extends Error {}

export function dumpOrder(name: string, keys: readonly string[]): number[] {
  const order = keys.map((_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
  for (let i = 1; i < order.length; i++) {
    if (keys[order[i]!] === keys[order[i - 1]!]) throw new DumpRaceError(`${name} changed shape while it was dumped (a key came twice)`);
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
    if ((await rulesetGeneration(socket)) !== generation) throw new DumpRaceError('the ruleset changed while it was read');
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
 * The elements of one simple mappings' map or set as status compares them (status-compare.ts):
 * the key and data exactly as the kernel holds them (latin1 text of their bytes: one string per
 * element, no objects), the comment, the counter (-1: none) and the positions of elements that
 * carry anything else (flags, timeouts, other expressions), which are never what natctl loaded.
 */
export interface CompactSet {
  name: string;
  keys: string[];
  /** Data of a map's elements ('' in a set). */
  data: string[];
  comments: (string | null)[];
  packets: number[];
  bytes: number[];
  odd: number[];
}

/** What status reads of the table itself, besides the elements. */
export type TableMeta = Omit<RawTable, 'elements'> & {
  /** shapeDigest: everything but the simple mappings' elements, counters and handles. */
  digest?: string;
};

export interface CompactRead {
  /** The ruleset generation id before and after the dumps (equal: one snapshot). */
  generations: [number, number];
  /** The table's chains, sets, maps and rules (the `meta` part only); null: no table. */
  meta?: TableMeta | null;
  sets: CompactSet[];
}

/** Appends the elements of one NFT_MSG_NEWSETELEM dump message to `into`, read in place. */
export function decodeCompactMessage(data: Buffer, into: CompactSet): void {
  eachAttribute(data, 4, data.length, (type, from, to) => {
    if (type !== 3) return;
    eachAttribute(data, from, to, (t, f, e) => {
      if (t !== 1) return;
      let key: string | undefined;
      let value = '';
      let comment: string | null = null;
      let counter: { packets: number; bytes: number } | undefined;
      let odd = false;
      eachAttribute(data, f, e, (a, s, z) => {
        if (a === 1 || a === 2) {
          const inner = findAttribute(data, s, z, 1);
          const bytes = inner ? data.toString('latin1', inner[0], inner[1]) : '';
          if (a === 1) key = bytes;
          else value = bytes;
        } else if (a === 6) comment = udataComment(data.subarray(s, z)) ?? null;
        else if (a === 7 && !counter) {
          counter = counterAt(data, s, z);
          if (!counter) odd = true;
        } else if (a === 11) {
          eachAttribute(data, s, z, (_x, g, h) => {
            const found = counterAt(data, g, h);
            if (found && !counter) counter = found;
            else odd = true;
          });
        } else odd = true;
      });
      if (key === undefined) throw new Error(`${into.name}: an element without a key`);
      if (odd) into.odd.push(into.keys.length);
      into.keys.push(key);
      into.data.push(value);
      into.comments.push(comment);
      const held = counter as { packets: number; bytes: number } | undefined;
      into.packets.push(held ? held.packets : -1);
      into.bytes.push(held ? held.bytes : -1);
    });
  });
}

/** dnat: the table and the dnat maps' elements; fwd: the forward sets' elements; shape: the table alone. */
export type CompactPart = 'dnat' | 'fwd' | 'shape';

/**
 * One part of status's read over netlink, run in a thread (or a process) of its own so that
 * the two big dumps overlap each other and the main thread's work (docs/performance.md,
 * "status"): `dnat` reads the table's chains, sets, maps and rules and the dnat maps' elements,
 * `fwd` the forward sets' elements.
 */
export async function readCompactPart(part: CompactPart, netns?: string): Promise<CompactRead> {
  const socket = openSocket(netns);
  try {
    const table = cString(tableName);
    const before = await rulesetGeneration(socket);
    const setsAll = (await dump(socket, NFT_MSG_GETSET, request(attribute(1, table)))).filter((a) => text(first(a, 1)) === tableName);
    const setsAndMaps = setsAll.filter((a) => !isAnonymous(a));
    const names = setsAndMaps.map((a) => text(first(a, 2)) ?? '');
    let meta: TableMeta | null | undefined;
    if (part !== 'fwd') {
      const chainDump = (await dump(socket, NFT_MSG_GETCHAIN, request(attribute(1, table)))).filter((a) => text(first(a, 1)) === tableName);
      const chains = chainDump.map((a) => text(first(a, 3)) ?? '');
      meta = { chains, ...namesByKind(setsAndMaps), rules: [] };
      if (!chains.length && !setsAndMaps.length && !(await tableExists(socket, table))) meta = null;
      if (meta) {
        const rules = (await dump(socket, NFT_MSG_GETRULE, request(attribute(1, table)))).filter((a) => text(first(a, 1)) === tableName);
        meta.rules = rules.map(rawRuleOf);
        meta.digest = await shapeDigest(socket, table, chainDump, setsAll, rules);
      }
    }
    const sets: CompactSet[] = [];
    for (const name of names) {
      if (part === 'shape' || !simpleLayout(name) || !name.startsWith(part)) continue;
      const into: CompactSet = { name, keys: [], data: [], comments: [], packets: [], bytes: [], odd: [] };
      const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, request(attribute(1, table), attribute(2, cString(name))), { flags: NLM_F_DUMP });
      for (let i = 0; i < messages.length; i++) {
        decodeCompactMessage(messages[i]!.data, into);
        messages[i] = undefined as unknown as Message; // this message's buffer may go now
      }
      sets.push(into);
    }
    const after = await rulesetGeneration(socket);
    return { generations: [before, after], ...(meta !== undefined ? { meta } : {}), sets };
  } finally {
    socket.close();
  }
}

const statusWorkerScript = import.meta.url.endsWith('.ts') ? join(here, '../../../dist/backends/nft/status-read-worker.js') : join(here, 'status-read-worker.js');

/** One part in a thread of this process (the addon enters the namespace there), or in a process started in the namespace. */
function readPartApart(part: CompactPart, runner: Runner): Promise<CompactRead> {
  if (runner.netns === undefined || canEnterNetns()) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(statusWorkerScript, { workerData: { part, netns: runner.netns } });
      // Not terminated: it ends once its socket is closed (terminating a thread whose netlink
      // addon is still tearing down aborts the process).
      worker.once('message', (message: { read?: CompactRead; error?: string }) => {
        if (message.read) resolve(message.read);
        else reject(new Error(message.error ?? 'the netlink reader failed'));
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the netlink reader exited (${code})`)));
    });
  }
  return runner.run(process.execPath, [statusWorkerScript, part]).then((result) => {
    if (result.exitCode !== 0) throw new Error(result.stderr.trim() || 'the netlink reader failed');
    return JSON.parse(result.stdout) as CompactRead;
  });
}

/** What status reads over netlink, compactly: the table (null: none) and the simple mappings' elements. */
export interface CompactTable extends TableMeta {
  elements: Map<string, CompactSet>;
  /** The ruleset generation id all the dumps saw. */
  generation: number;
}

/**
 * Starts status's read over netlink in two threads (or processes) at once and returns at once:
 * the caller builds what it compares with meanwhile. Rejects when netlink cannot be read here,
 * or when the ruleset changed between the dumps (the caller then reads another way).
 */
export function startCompactRead(runner: Runner): Promise<CompactTable | null> {
  const parts = (['dnat', 'fwd'] as const).map((part) => readPartApart(part, runner));
  return Promise.all(parts).then(([dnat, fwd]) => {
    const generations = [...dnat!.generations, ...fwd!.generations];
    if (generations.some((g) => g !== generations[0])) throw new Error('the ruleset changed while status read it');
    if (!dnat!.meta) return null;
    const elements = new Map<string, CompactSet>();
    for (const set of [...dnat!.sets, ...fwd!.sets]) elements.set(set.name, set);
    return { ...dnat!.meta, elements, generation: generations[0]! };
  });
}

/** Attributes as one text (type:hex), in order, without the types in `skip`. */
function attributesText(value: Buffer | undefined, skip: readonly number[] = []): string {
  if (!value) return '';
  let out = '';
  eachAttribute(value, 0, value.length, (type, from, to) => {
    if (!skip.includes(type)) out += `${type}:${value.toString('hex', from, to)};`;
  });
  return out;
}

/**
 * A rule's expressions as text: a counter's values left out, an anonymous set a lookup names
 * replaced by its content (its name depends on the order the table was built in).
 */
function expressionsText(list: Buffer | undefined, anonymous: (name: string) => string): string {
  if (!list) return '';
  let out = '';
  eachAttribute(list, 0, list.length, (_t, from, to) => {
    const expression = list.subarray(from, to);
    const attrs = attributes(expression);
    const name = text(first(attrs, 1)) ?? '';
    const data = first(attrs, 2);
    if (name === 'counter') out += 'counter|';
    else if (name === 'lookup' || name === 'dynset') {
      // NFTA_LOOKUP_SET 1 / NFTA_DYNSET_SET_NAME 2; the set ids (NFTA_LOOKUP_SET_ID 4, NFTA_DYNSET_SET_ID 3) only exist in a batch.
      const setAttr = name === 'lookup' ? 1 : 2;
      let body = '';
      if (data) {
        eachAttribute(data, 0, data.length, (type, f, e) => {
          if (type === setAttr) {
            const set = text(data.subarray(f, e)) ?? '';
            body += `${type}:${set.startsWith('__set') ? anonymous(set) : set};`;
          } else body += `${type}:${data.toString('hex', f, e)};`;
        });
      }
      out += `${name}(${body})|`;
    } else out += `${name}(${attributesText(data)})|`;
  });
  return out;
}

/**
 * A digest of natctl's table as status compares it with the last apply's (docs/operations.md,
 * "status"): every chain's definition and rules in order (counters' values, handles and
 * anonymous sets' names left out, their contents in), every set and map's definition, and the
 * elements of every map and set except the simple mappings' ones, which status compares element
 * by element. The same table built in another order (a delta) gives the same digest.
 */
async function shapeDigest(socket: Socket, table: Buffer, chains: Map<number, Buffer[]>[], sets: Map<number, Buffer[]>[], rules: Map<number, Buffer[]>[]): Promise<string> {
  const elementsOf = async (name: string): Promise<string> => {
    const [messages] = await socket.request((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, request(attribute(1, table), attribute(2, cString(name))), { flags: NLM_F_DUMP });
    const elements: string[] = [];
    for (const message of messages) {
      const list = first(attributes(message.data, 4), 3);
      if (!list) continue;
      eachAttribute(list, 0, list.length, (_t, from, to) => {
        // An element's own counter (NFTA_SET_ELEM_EXPR 7, _EXPRESSIONS 11) is left out.
        elements.push(attributesText(list.subarray(from, to), [7, 11]));
      });
    }
    return elements.sort().join(',');
  };
  // A set's definition without what the kernel gives it or counts (kernel 6.1): NFTA_SET_NAME 2,
  // _ID 10, _PAD 14, _HANDLE 16, _TYPE 19 (its backend, which follows its size), _COUNT 20.
  const definition = (a: Map<number, Buffer[]>): string => [...a].filter(([type]) => ![2, 10, 14, 16, 19, 20].includes(type)).map(([type, values]) => `${type}:${values.map((v) => v.toString('hex')).join('+')}`).sort().join(';');
  const anonymousContent = new Map<string, string>();
  const anonymous = new Map<string, Map<number, Buffer[]>>();
  const parts: string[] = [];
  for (const set of sets) {
    const name = text(first(set, 2)) ?? '';
    // The generation marker is compared by name (its name changes with every apply).
    if (/^g-[0-9a-f]+$/.test(name)) continue;
    if (name.startsWith('__set')) anonymous.set(name, set);
    else parts.push(`set ${name} ${definition(set)} {${simpleLayout(name) ? '' : await elementsOf(name)}}`);
  }
  const anonymousText = async (name: string): Promise<string> => {
    const set = anonymous.get(name);
    if (!set) return `?${name}`;
    return `{${definition(set)} ${await elementsOf(name)}}`;
  };
  for (const name of anonymous.keys()) anonymousContent.set(name, await anonymousText(name));
  const byChain = new Map<string, string[]>();
  for (const rule of rules) {
    const chain = text(first(rule, 2)) ?? '';
    const line = `${expressionsText(first(rule, 4), (set) => anonymousContent.get(set) ?? `?${set}`)} ${first(rule, 7)?.toString('hex') ?? ''}`;
    const list = byChain.get(chain);
    if (list) list.push(line);
    else byChain.set(chain, [line]);
  }
  for (const chain of chains) {
    const name = text(first(chain, 3)) ?? '';
    // NFTA_CHAIN_HOOK 4, _POLICY 5, _TYPE 7, _FLAGS 10, _USERDATA 12: not the handle, use count or counters.
    const settings = [4, 5, 7, 10, 12].map((type) => `${type}:${first(chain, type)?.toString('hex') ?? ''}`).join(';');
    parts.push(`chain ${name} ${settings}\n${(byChain.get(name) ?? []).join('\n')}`);
  }
  return createHash('sha256').update(parts.sort().join('\n')).digest('hex');
}

/** The digest of the table as it is now (shapeDigest); undefined when there is no table. */
export async function readShapeDigest(runner: Runner): Promise<string | undefined> {
  return (await readPartApart('shape', runner)).meta?.digest;
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
