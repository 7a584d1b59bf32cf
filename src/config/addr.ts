// Address helpers: parsing, canonical text (RFC 5952 for IPv6, so what we render is what
// nft prints back) and prefix arithmetic. Kept dependency-free and small on purpose.
import { isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** canonical network address (host bits cleared) */
  addr: string;
  prefix: number;
}

/**
 * node:net's isIPv4 without its regex (it runs several times per address of every mapping):
 * four decimal parts 0-255, no sign, no leading zero, nothing else.
 */
function isDottedQuad(text: string): boolean {
  let parts = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || value > 255 || (digits > 1 && text.charCodeAt(i - digits) === 0x30)) return false;
      parts++;
      digits = 0;
      value = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (++digits > 3) return false;
      value = value * 10 + (c - 0x30);
    } else return false;
  }
  return parts === 4;
}

export function ipFamily(text: string): Family | undefined {
  // An IPv6 address has at least two colons and an IPv4 address none: only one check runs,
  // and "198.18.0.2:80" is refused without either.
  const colon = text.indexOf(':');
  if (colon < 0) return isDottedQuad(text) ? 4 : undefined;
  if (text.indexOf(':', colon + 1) < 0 || text.includes('%')) return undefined;
  return isIPv6(text) ? 6 : undefined;
}

/**
 * An IPv4 address as a plain number (0 to 2^32-1). IPv4 arithmetic stays in numbers: a config
 * of 50,000 mappings parses, checks and compares 100,000s of addresses, and BigInt arithmetic
 * made that a third of a second (docs/performance.md).
 */
function v4ToNumber(text: string): number {
  let value = 0;
  let part = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      value = value * 256 + part;
      part = 0;
    } else part = part * 10 + (c - 0x30);
  }
  return value * 256 + part;
}

function v4ToBig(text: string): bigint {
  return BigInt(v4ToNumber(text));
}

function numberToV4(value: number): string {
  return `${Math.floor(value / 0x1000000) & 0xff}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}

function bigToV4(value: bigint): string {
  return numberToV4(Number(value & 0xffffffffn));
}

function v6ToBig(text: string): bigint {
  let source = text;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(source);
  if (v4Tail?.[1]) {
    const v4 = v4ToBig(v4Tail[1]);
    source = source.slice(0, -v4Tail[1].length) + `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = source.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups];
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function bigToV6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function ipToBig(text: string): bigint {
  return ipFamily(text) === 4 ? v4ToBig(text) : v6ToBig(text);
}

export function bigToIp(value: bigint, family: Family): string {
  return family === 4 ? bigToV4(value) : bigToV6(value);
}

/** Canonical text of an address, or undefined when it is not an IP address. */
export function canonicalIp(text: string): string | undefined {
  const family = ipFamily(text);
  if (!family) return undefined;
  // ipFamily accepts only the canonical dotted quad (no leading zeros, no short forms), as node:net's isIPv4.
  if (family === 4) return text;
  return bigToIp(ipToBig(text), family);
}

const bits = (family: Family): number => (family === 4 ? 32 : 128);

/** Parses `addr/prefix` (or a bare address as a host prefix). Host bits must be zero. */
export function parseCidr(text: string): Cidr | string {
  const [addrText = '', prefixText, ...rest] = text.split('/');
  if (rest.length) return 'is not an address or CIDR prefix';
  const family = ipFamily(addrText);
  if (!family) return 'is not an IP address or CIDR prefix';
  const max = bits(family);
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return `has a prefix length outside 0-${max}`;
    prefix = Number(prefixText);
  }
  const value = ipToBig(addrText);
  const hostMask = (1n << BigInt(max - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    return `has host bits set (did you mean ${bigToIp(value & ~hostMask, family)}/${prefix}?)`;
  }
  return { family, addr: bigToIp(value, family), prefix };
}

export function cidrText(cidr: Cidr): string {
  return `${cidr.addr}/${cidr.prefix}`;
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (ipFamily(ip) !== cidr.family) return false;
  if (cidr.family === 4) {
    const size = 2 ** (32 - cidr.prefix);
    return Math.floor(v4ToNumber(ip) / size) === Math.floor(v4ToNumber(cidr.addr) / size);
  }
  const shift = BigInt(bits(cidr.family) - cidr.prefix);
  return ipToBig(ip) >> shift === ipToBig(cidr.addr) >> shift;
}

/** An inclusive address range `a-b` (or a single address); both ends of one family. */
export interface AddrRange {
  family: Family;
  from: string;
  to: string;
}

export function parseAddrRange(text: string): AddrRange | string {
  const parts = text.split('-');
  if (parts.length > 2) return 'is not an address or an address range a-b';
  const from = canonicalIp(parts[0] ?? '');
  const to = canonicalIp(parts[1] ?? parts[0] ?? '');
  if (!from || !to) return 'is not an address or an address range a-b';
  const family = ipFamily(from) as Family;
  if (ipFamily(to) !== family) return 'mixes IPv4 and IPv6';
  if (ipToBig(from) > ipToBig(to)) return 'is a range whose start is above its end';
  const unusable = unusableSourceReason(from) ?? unusableSourceReason(to);
  if (unusable) return unusable;
  return { family, from, to };
}

export function isLoopback(ip: string): boolean {
  return ipFamily(ip) === 4 ? ip.startsWith('127.') : canonicalIp(ip) === '::1';
}

/**
 * Addresses no packet can be forwarded to or from, with the reason: natctl refuses them
 * where they could never work (docs/config.md, "Addresses natctl refuses").
 */
function specialAddress(ip: string): string | undefined {
  const family = ipFamily(ip);
  if (family === undefined) return undefined;
  if (family === 4) {
    const value = v4ToNumber(ip);
    if (value === 0xffffffff) return 'is the limited broadcast address';
    if (Math.floor(value / 0x10000000) === 0xe) return 'is a multicast address (224.0.0.0/4)';
    if (value < 0x1000000) return value === 0 ? 'is the unspecified address' : 'is in 0.0.0.0/8, which no host may use';
    return undefined;
  }
  const value = ipToBig(ip);
  if (value === 0n) return 'is the unspecified address';
  if (value >> 32n === 0xffffn) return 'is an IPv4-mapped IPv6 address (::ffff:a.b.c.d); nftables never sees IPv4 traffic as IPv6: write the IPv4 address';
  if (value >> 120n === 0xffn) return 'is a multicast address (ff00::/8)';
  return undefined;
}

/** Why `ip` can never be a DNAT target (mappings[].target), or undefined when it can. */
export function unusableTargetReason(ip: string): string | undefined {
  const special = specialAddress(ip);
  if (special) return `${special}; it cannot be a target`;
  if (ipFamily(ip) === 6 && ipToBig(ip) >> 118n === 0x3fan) {
    return 'is an IPv6 link-local address (fe80::/10); without a zone it names no particular link, so it cannot be a target';
  }
  return undefined;
}

/**
 * Why `ip` can never be a host IP (mappings[].hostIp, publish), or undefined when it can.
 * 0.0.0.0 and :: are Docker's "every local address of the family" and stay valid.
 */
export function unusableHostIpReason(ip: string): string | undefined {
  if (ip === '0.0.0.0' || (ipFamily(ip) !== 4 && ipToBig(ip) === 0n)) return undefined;
  const special = specialAddress(ip);
  return special ? `${special}; it can never be a local address to publish on` : undefined;
}

/** Why `ip` can never be a source address natctl rewrites to (snat to), or undefined. */
export function unusableSourceReason(ip: string): string | undefined {
  const special = specialAddress(ip);
  return special ? `${special}; it cannot be a source address` : undefined;
}
