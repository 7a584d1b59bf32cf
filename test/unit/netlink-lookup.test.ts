// Keys of the simple mappings' maps and sets as the kernel holds them (a delta's read-back looks
// elements up by key over netlink, src/backends/nft/netlink-read.ts): each field of a
// concatenation padded to 4 bytes, a single field as is; anything else is not looked up.
import { describe, expect, it } from 'vitest';
import { decodeElementMessage, encodeKey } from '../../src/backends/nft/netlink-read.js';

const hex = (buffer: Buffer | undefined): string | undefined => buffer?.toString('hex');

describe('netlink element keys', () => {
  it('lays the keys out as nft registers do', () => {
    expect(hex(encodeKey('dnat4', ['tcp', 8080]))).toBe('06000000' + '1f900000');
    expect(hex(encodeKey('dnat4_addr', ['198.18.0.1', 'udp', 53]))).toBe('c6120001' + '11000000' + '00350000');
    expect(hex(encodeKey('fwd4_tcp', [8080]))).toBe('1f90');
    expect(hex(encodeKey('fwd6_sctp_addr', ['fd00::1', 9]))).toBe('fd000000000000000000000000000001' + '00090000');
    expect(hex(encodeKey('dnat6', ['sctp', 1]))).toBe('84000000' + '00010000');
  });

  it('refuses what does not fit: other maps, wrong arity or types', () => {
    expect(encodeKey('dnat4_tcp_chains', [8080])).toBeUndefined();
    expect(encodeKey('dnat4', [8080])).toBeUndefined();
    expect(encodeKey('dnat4', ['icmp', 1])).toBeUndefined();
    expect(encodeKey('fwd4_tcp_addr', ['fd00::1', 80])).toBeUndefined();
    expect(encodeKey('fwd4_tcp', ['80'])).toBeUndefined();
  });

  it('a key encoded here decodes back to the same values (one element message)', () => {
    const attr = (type: number, value: Buffer): Buffer => {
      const out = Buffer.alloc((4 + value.length + 3) & ~3);
      out.writeUInt16LE(4 + value.length, 0);
      out.writeUInt16LE(type, 2);
      value.copy(out, 4);
      return out;
    };
    const key = encodeKey('dnat4', ['tcp', 10000])!;
    const data = Buffer.from('c612000200500000', 'hex'); // 198.18.0.2 . 80
    const element = attr(1 | 0x8000, Buffer.concat([attr(1 | 0x8000, attr(1, key)), attr(2 | 0x8000, attr(1, data))]));
    const message = Buffer.concat([Buffer.from([1, 0, 0, 0]), attr(3 | 0x8000, element)]);
    expect(decodeElementMessage(message, 'dnat4')).toEqual([[{ elem: { val: { concat: ['tcp', 10000] } } }, { concat: ['198.18.0.2', 80] }]]);
  });
});

describe('a netlink dump read back', () => {
  it('is put in nft order, and refused when a key came twice (the hash table was resized mid-dump)', async () => {
    const { dumpOrder } = await import('../../src/backends/nft/netlink-read.js');
    expect(dumpOrder('dnat4', ['b', 'c', 'a'])).toEqual([2, 0, 1]);
    expect(() => dumpOrder('dnat4', ['b', 'a', 'b'])).toThrow(/dnat4 changed shape while it was dumped/);
  });
});
