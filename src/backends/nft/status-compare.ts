// status's comparison of what it read over netlink (netlink-read.ts, CompactTable) with the
// render of the last generation, and the counters it shows (docs/operations.md, "status").
// The simple mappings' elements are compared key by key as the kernel holds them: each
// expected element's key and data are encoded to the kernel's bytes (one short string each)
// and looked up among the elements read; no JSON object is built per element read.
import type { LiveState } from '../backend.js';
import { formatEndpoint } from '../../model/target.js';
import type { NftDocument } from './json.js';
import { compareTableObjects, countersTable, display, ruleCounters } from './listing.js';
import { type CompactSet, type CompactTable, decodeKeyText, simpleLayout } from './netlink-read.js';

const protocolNumbers: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };
const protocolNames: Record<number, string> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** The bytes (latin1 text) of `values` laid out as `fields` (a concatenation pads each field to 4 bytes); undefined when they do not fit. */
function encode(fields: readonly string[], value: unknown): string | undefined {
  const values = fields.length > 1 ? (value as { concat?: unknown[] } | null)?.concat : [value];
  if (!Array.isArray(values) || values.length !== fields.length) return undefined;
  let out = '';
  for (let i = 0; i < fields.length; i++) {
    const [field, item] = [fields[i], values[i]];
    let bytes: string;
    if (field === 'port' && typeof item === 'number' && Number.isInteger(item) && item >= 0 && item <= 0xffff) bytes = String.fromCharCode(item >> 8, item & 0xff);
    else if (field === 'proto' && typeof item === 'string' && protocolNumbers[item] !== undefined) bytes = String.fromCharCode(protocolNumbers[item]!);
    else if (field === 'ip4' && typeof item === 'string') {
      const ip = ip4Bytes(item);
      if (ip === undefined) return undefined;
      bytes = ip;
    } else if (field === 'ip6' && typeof item === 'string' && item.includes(':')) {
      // The kernel's own bytes of it, through the decoder's inverse (rare: IPv6 mappings).
      const hex = ipv6Hex(item);
      if (hex === undefined) return undefined;
      bytes = Buffer.from(hex, 'hex').toString('latin1');
    } else return undefined;
    out += fields.length > 1 ? bytes.padEnd((bytes.length + 3) & ~3, '\0') : bytes;
  }
  return out;
}

/** The 4 bytes of a dotted IPv4 address (latin1 text), without allocating its parts; undefined when it is not one. */
function ip4Bytes(text: string): string | undefined {
  let out = '';
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 46;
    if (code === 46) {
      if (digits === 0 || value > 255) return undefined;
      out += String.fromCharCode(value);
      value = 0;
      digits = 0;
    } else if (code >= 48 && code <= 57 && digits < 3) {
      value = value * 10 + code - 48;
      digits++;
    } else return undefined;
  }
  return out.length === 4 ? out : undefined;
}

function ipv6Hex(text: string): string | undefined {
  const [head, tail, ...rest] = text.split('::');
  if (rest.length) return undefined;
  const groups = (part: string | undefined): string[] => (part ? part.split(':') : []);
  const [h, t] = [groups(head), groups(tail)];
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const all = [...h, ...Array.from({ length: fill }, () => '0'), ...t];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return all.map((g) => g.padStart(4, '0')).join('').toLowerCase();
}

/** The expected elements of one simple mappings' set, as the kernel holds them, each found by its key bytes. */
interface Expected {
  items: unknown[];
  index: Map<string, number>;
  data: string[];
  comments: (string | null)[];
  counters: boolean[];
}

/**
 * The expected elements of one simple mappings' set; undefined when one does not fit the
 * layout (never for what natctl renders).
 */
function expectedElements(name: string, items: unknown[]): Expected | undefined {
  const layout = simpleLayout(name);
  if (!layout) return undefined;
  const out: Expected = { items, index: new Map(), data: [], comments: [], counters: [] };
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    const [keyPart, dataPart] = Array.isArray(item) ? [item[0], item[1]] : [item, undefined];
    const elem = (keyPart as { elem?: { val?: unknown; comment?: unknown; counter?: unknown } } | null)?.elem;
    const key = encode(layout.key, elem ? elem.val : keyPart);
    const data = layout.data ? encode(layout.data, dataPart) : '';
    if (key === undefined || data === undefined || out.index.has(key)) return undefined;
    out.index.set(key, i);
    out.data.push(data);
    out.comments.push(typeof elem?.comment === 'string' ? elem.comment : null);
    out.counters.push(elem?.counter !== undefined && elem.counter !== null);
  }
  return out;
}

/** Problems of one simple mappings' set, worded as verify words them. Throws when a key came twice (a dump that overlapped a resize). */
function compareSet(label: string, expected: Expected, held: CompactSet): string[] {
  const problems: string[] = [];
  const differ: number[] = [];
  const extra: string[] = [];
  const extraSeen = new Set<string>();
  const seen = new Uint8Array(expected.items.length);
  const odd = held.odd.length ? new Set(held.odd) : undefined;
  const { keys, data, comments, packets } = held;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const at = expected.index.get(key);
    if (at === undefined) {
      if (extraSeen.has(key)) throw new Error(`${held.name} changed shape while it was dumped (a key came twice)`);
      extraSeen.add(key);
      extra.push(key);
      continue;
    }
    if (seen[at]) throw new Error(`${held.name} changed shape while it was dumped (a key came twice)`);
    seen[at] = 1;
    if (expected.data[at] !== data[i] || expected.comments[at] !== comments[i] || expected.counters[at] !== packets[i]! >= 0 || odd?.has(i)) differ.push(at);
  }
  for (let at = 0; at < seen.length; at++) if (!seen[at]) differ.push(at);
  if (keys.length !== expected.items.length) problems.push(`${label} has ${keys.length} elements, expected ${expected.items.length}`);
  for (const at of differ.sort((a, b) => a - b)) problems.push(`${label} element missing or different: ${display(expected.items[at])}`);
  for (const key of extra) {
    const values = decodeKeyText(held.name, key);
    problems.push(`${label} holds an element not declared: ${values ? values.join(' . ') : Buffer.from(key, 'latin1').toString('hex')}`);
  }
  return problems;
}

/**
 * The comparison status makes (docs/operations.md, "status"): compareTableObjects, and every
 * element of the maps and sets holding simple mappings, key, data, comment and counter, both
 * ways (missing, different, not declared).
 */
export function compareCompactTable(document: NftDocument, table: CompactTable | null): string[] {
  return compareTableObjects(document, table, (name, body) => {
    const held = table?.elements.get(String(body.name));
    if (!held) return undefined;
    const items = Array.isArray(body.elem) ? (body.elem as unknown[]) : [];
    const expected = expectedElements(String(body.name), items);
    if (!expected) throw new Error(`${name}: an element natctl rendered does not fit its layout`);
    return compareSet(name, expected, held);
  });
}

const dnatName = /^dnat([46])(_addr)?$/;
const fwdName = /^fwd([46])_([a-z]+)(_addr)?$/;

/**
 * The counters of a compact table (docs/ruleset.md, "Counters"): a DNAT element names its
 * mapping (its comment) and counts connections; the forward element with the same
 * [address .] protocol . port counts packets and bytes; chains' rules count the others.
 */
export function countersOfCompact(table: CompactTable): Pick<LiveState, 'counters' | 'blocked'> {
  const { counters, entry } = countersTable();
  const blocked: LiveState['blocked'] = [];
  // [address .] protocol number . port bytes -> the mapping's counters.
  const byKey = new Map<string, ReturnType<typeof entry>>();
  for (const set of table.elements.values()) {
    const dnat = dnatName.exec(set.name);
    if (!dnat) continue;
    const [family, bound] = [dnat[1]!, dnat[2] !== undefined];
    const width = bound ? (family === '4' ? 4 : 16) : 0;
    for (let i = 0; i < set.keys.length; i++) {
      const comment = set.comments[i];
      if (!comment) continue;
      const key = set.keys[i]!;
      const [addr, proto, port] = [key.slice(0, width), key.charCodeAt(width), key.slice(width + 4, width + 6)];
      const mapping = entry(comment);
      mapping.connections = Math.max(set.packets[i]!, 0);
      const portNumber = (port.charCodeAt(0) << 8) | port.charCodeAt(1);
      const address = bound ? String(decodeKeyText(set.name, key)?.[0]) : family === '4' ? '0.0.0.0' : '::';
      mapping.description = `${protocolNames[proto] ?? proto} ${formatEndpoint(address, { from: portNumber, to: portNumber })}`;
      byKey.set(`${family}${addr}\0${proto}\0${port}`, mapping);
    }
  }
  for (const set of table.elements.values()) {
    const fwd = fwdName.exec(set.name);
    if (!fwd) continue;
    const [family, proto, bound] = [fwd[1]!, protocolNumbers[fwd[2]!], fwd[3] !== undefined];
    const width = bound ? (family === '4' ? 4 : 16) : 0;
    for (let i = 0; i < set.keys.length; i++) {
      const key = set.keys[i]!;
      const mapping = byKey.get(`${family}${key.slice(0, width)}\0${proto}\0${key.slice(width, width + 2)}`);
      if (!mapping) continue;
      mapping.packets = Math.max(set.packets[i]!, 0);
      mapping.bytes = Math.max(set.bytes[i]!, 0);
    }
  }
  for (const rule of table.rules) if (rule.counter) ruleCounters(rule.chain, rule.counter, rule.comment, entry, blocked);
  return { counters: [...counters.values()], blocked };
}
