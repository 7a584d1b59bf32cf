// The hand-written fast paths of the address and port parsers (IPv4 in plain numbers, no
// regex per address, ports by hand) mean exactly what the straightforward versions mean.
import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bigToIp, canonicalIp, cidrContains, ipFamily, ipToBig, parseCidr, unusableHostIpReason, unusableTargetReason } from '../../src/config/addr.js';
import { parsePortRange } from '../../src/config/ports.js';

const quad = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Strings near IPv4 syntax: parts with leading zeros, too large, too many or too few, stray characters. */
const nearQuad = fc.oneof(
  fc.array(fc.oneof(fc.integer({ min: 0, max: 1100 }).map(String), fc.constantFrom('00', '01', '000', '', ' 1', '1 ', '+1', '0x1', '٣')), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('.')),
  fc.string({ unit: fc.constantFrom(...'0123456789.:%x -'.split('')), maxLength: 18 }),
);

describe('address parsing fast paths', () => {
  it('ipFamily says 4 exactly when node:net says IPv4', () => {
    fc.assert(fc.property(nearQuad, (text) => {
      expect(ipFamily(text) === 4).toBe(isIPv4(text));
    }), { numRuns: 5000 });
    for (const text of ['0.0.0.0', '255.255.255.255', '256.0.0.0', '1.2.3', '1.2.3.4.', '01.2.3.4', '1.2.3.4\n', '198.18.0.2:80']) {
      expect(ipFamily(text) === 4, text).toBe(isIPv4(text));
    }
  });

  it('IPv4 text, numbers and prefixes agree with BigInt arithmetic', () => {
    fc.assert(fc.property(u32, u32, fc.integer({ min: 0, max: 32 }), (a, b, prefixLength) => {
      const ip = quad(a);
      expect(canonicalIp(ip)).toBe(ip);
      expect(ipToBig(ip)).toBe(BigInt(a));
      expect(bigToIp(BigInt(a), 4)).toBe(ip);
      const shift = BigInt(32 - prefixLength);
      const network = quad(Number((BigInt(b) >> shift) << shift));
      const cidr = parseCidr(`${network}/${prefixLength}`);
      if (typeof cidr === 'string') throw new Error(cidr);
      expect(cidrContains(cidr, ip)).toBe(BigInt(a) >> shift === BigInt(b) >> shift);
    }), { numRuns: 5000 });
  });

  it('special IPv4 addresses are refused as before', () => {
    expect(unusableTargetReason('0.0.0.0')).toMatch(/unspecified/);
    expect(unusableTargetReason('0.1.2.3')).toMatch(/0\.0\.0\.0\/8/);
    expect(unusableTargetReason('224.0.0.1')).toMatch(/multicast/);
    expect(unusableTargetReason('239.255.255.255')).toMatch(/multicast/);
    expect(unusableTargetReason('255.255.255.255')).toMatch(/broadcast/);
    expect(unusableTargetReason('223.255.255.255')).toBeUndefined();
    expect(unusableTargetReason('240.0.0.1')).toBeUndefined();
    expect(unusableHostIpReason('0.0.0.0')).toBeUndefined();
    expect(unusableHostIpReason('::')).toBeUndefined();
    expect(unusableHostIpReason('224.0.0.1')).toMatch(/multicast/);
  });
});

describe('port parsing fast path', () => {
  /** The rule as written before: 1-5 digits, 1-65535, an optional "-end" not below the start. */
  function reference(text: string): { from: number; to: number } | undefined {
    const parts = text.trim().split('-');
    if (parts.length > 2) return undefined;
    const port = (t: string): number | undefined => (/^\d{1,5}$/.test(t) && Number(t) >= 1 && Number(t) <= 65535 ? Number(t) : undefined);
    const from = port(parts[0] ?? '');
    const to = port(parts[1] ?? parts[0] ?? '');
    return from === undefined || to === undefined || from > to ? undefined : { from, to };
  }
  it('accepts and refuses exactly what the regex-based rule does', () => {
    const text = fc.oneof(fc.integer({ min: -5, max: 70000 }).map(String), fc.string({ unit: fc.constantFrom(...'0123456789- x'.split('')), maxLength: 13 }));
    fc.assert(fc.property(text, (t) => {
      const got = parsePortRange(t);
      expect(typeof got === 'string' ? undefined : got).toEqual(reference(t));
    }), { numRuns: 5000 });
  });
});
