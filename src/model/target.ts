// Target strings: ip, ip:port, ip:start-end, [v6], [v6]:port, or a bare IPv6 address.
import { canonicalIp, ipFamily, type Family, unusableTargetReason } from '../config/addr.js';
import { type PortRange, formatPortRange, parsePortRange } from '../config/ports.js';
import type { Mapping } from './model.js';

export interface ParsedTarget {
  addr: string;
  family: Family;
  ports?: PortRange;
}

export function parseTarget(text: string): ParsedTarget | string {
  const value = text.trim();
  let addrText = value;
  let portText: string | undefined;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return 'has an unclosed "["';
    addrText = value.slice(1, close);
    const after = value.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return 'must be [IPv6] or [IPv6]:port';
      portText = after.slice(1);
    }
    if (ipFamily(addrText) !== 6) return `has "${addrText}" in brackets, which is not an IPv6 address`;
  } else if (ipFamily(value) !== 6) {
    const colon = value.indexOf(':');
    if (colon >= 0) {
      addrText = value.slice(0, colon);
      portText = value.slice(colon + 1);
    }
  }
  const family = ipFamily(addrText);
  const addr = canonicalIp(addrText);
  if (!family || !addr) return 'is not ip, ip:port, [ipv6]:port or ip:start-end';
  const unusable = unusableTargetReason(addr);
  if (unusable) return `has address ${addrText}, which ${unusable}`;
  if (portText === undefined) return { addr, family };
  const ports = parsePortRange(portText);
  if (typeof ports === 'string') return `has port "${portText}", which ${ports}`;
  return { addr, family, ports };
}

/** `addr:port[-end]`, IPv6 in brackets: the inverse of parseTarget. */
export function formatEndpoint(addr: string, ports: PortRange): string {
  return `${addr.includes(':') ? `[${addr}]` : addr}:${formatPortRange(ports)}`;
}

export function describeTargets(mapping: Mapping): string {
  return mapping.targets.map((t) => formatEndpoint(t.addr, t.ports)).join(', ');
}
