// status's element-by-element comparison (src/backends/nft/status-compare.ts, docs/operations.md
// "status"): what it reads over netlink (each element's key and data as the kernel's bytes) is
// compared with the render of the last generation; a changed, removed or added element, a
// changed comment or a missing counter, a chain's rule count, an object not declared and a
// missing marker are each reported, and the counters are those the listing's reader finds.
import { describe, expect, it } from 'vitest';
import { countersOf } from '../../src/backends/nft/listing.js';
import type { NftDocument } from '../../src/backends/nft/json.js';
import { type CompactSet, type CompactTable, encodeKey } from '../../src/backends/nft/netlink-read.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { shapeFingerprint } from '../../src/backends/nft/shape-baseline.js';
import { compareCompactTable, countersOfCompact } from '../../src/backends/nft/status-compare.js';
import { ipToBig } from '../../src/config/addr.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { tableNamesOf } from '../helpers/status-table.js';

const config = parseConfigObject({
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: '198.18.0.2:80' },
    { name: 'admin', hostPort: 8443, target: '198.18.0.3:443', allow: ['198.19.0.0/24'] },
    { name: 'dns', hostPort: 53, proto: 'udp', target: '198.18.0.3:53' },
    { name: 'bound', hostIp: '198.18.1.1', hostPort: 2222, target: '198.18.0.4:22' },
    { name: 'six', hostPort: 8086, target: '[fd00:18::2]:80' },
  ],
  block: [{ name: 'no-mysql', proto: 'tcp', hostPort: 3306 }],
});
const document = renderNftDocument(buildModel(config), { stamp: 'abc123' });

/** The kernel's bytes of data `ip . port` (each field padded to 4 bytes), as latin1 text; written apart from the code under test. */
function dataBytes(ip: string, port: number): string {
  const v6 = ip.includes(':');
  const addr = Buffer.from(ipToBig(ip).toString(16).padStart(v6 ? 32 : 8, '0'), 'hex');
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(port, 0);
  return Buffer.concat([addr, tail]).toString('latin1');
}

/** What status reads over netlink right after `doc` was loaded (every counter at zero). */
function tableOf(doc: NftDocument): CompactTable {
  const elements: CompactTable['elements'] = new Map();
  const table: CompactTable = { ...tableNamesOf(doc, (name, items) => {
    const set: CompactSet = { name, keys: [], data: [], comments: [], packets: [], bytes: [], odd: [] };
    for (const item of items) {
      const [key, data] = Array.isArray(item) ? item : [item, undefined];
      const elem = (key as { elem: { val: unknown; comment?: string } }).elem;
      const values = typeof elem.val === 'object' ? (elem.val as { concat: (string | number)[] }).concat : [elem.val as number];
      set.keys.push(encodeKey(name, values)!.toString('latin1'));
      const [ip, port] = data ? (data as { concat: [string, number] }).concat : ['', 0];
      set.data.push(data ? dataBytes(ip, port) : '');
      set.comments.push(elem.comment ?? null);
      set.packets.push(0);
      set.bytes.push(0);
    }
    elements.set(name, set);
  }), elements, generation: 7 };
  return table;
}

const key = (set: string, ...values: (string | number)[]): string => encodeKey(set, values)!.toString('latin1');
const position = (set: CompactSet, k: string): number => set.keys.indexOf(k);

describe('status compares the elements it read over netlink with the render', () => {
  it('finds no difference in what was loaded, whatever the counters counted', () => {
    const table = tableOf(document);
    expect(compareCompactTable(document, table)).toEqual([]);
    const dnat4 = table.elements.get('dnat4')!;
    dnat4.packets[0] = 12;
    expect(compareCompactTable(document, table)).toEqual([]);
  });

  it('reports an element sent elsewhere, one removed, one added by hand, a changed comment and a lost counter', () => {
    const moved = tableOf(document);
    const dnat4 = moved.elements.get('dnat4')!;
    dnat4.data[position(dnat4, key('dnat4', 'tcp', 8080))] = dataBytes('198.18.0.9', 80);
    expect(compareCompactTable(document, moved)).toEqual([expect.stringMatching(/^map dnat4 element missing or different: .*"tcp",8080.*"web".*"198\.18\.0\.2",80/)]);

    const removed = tableOf(document);
    const fwd = removed.elements.get('fwd4_udp')!;
    const at = position(fwd, key('fwd4_udp', 53));
    for (const list of [fwd.keys, fwd.data, fwd.comments, fwd.packets, fwd.bytes]) list.splice(at, 1);
    expect(compareCompactTable(document, removed)).toEqual(['set fwd4_udp has 0 elements, expected 1', expect.stringMatching(/^set fwd4_udp element missing or different: .*53/)]);

    const added = tableOf(document);
    const bound = added.elements.get('dnat4_addr')!;
    bound.keys.push(key('dnat4_addr', '198.18.1.1', 'tcp', 9999));
    bound.data.push(dataBytes('198.18.0.66', 80));
    bound.comments.push(null);
    bound.packets.push(0);
    bound.bytes.push(0);
    expect(compareCompactTable(document, added)).toEqual(['map dnat4_addr has 2 elements, expected 1', 'map dnat4_addr holds an element not declared: 198.18.1.1 . tcp . 9999']);

    const renamed = tableOf(document);
    const six = renamed.elements.get('dnat6')!;
    six.comments[0] = 'other';
    expect(compareCompactTable(document, renamed)).toEqual([expect.stringMatching(/^map dnat6 element missing or different: .*"six"/)]);

    const uncounted = tableOf(document);
    const fwd4 = uncounted.elements.get('fwd4_tcp')!;
    fwd4.packets[0] = -1;
    fwd4.bytes[0] = -1;
    expect(compareCompactTable(document, uncounted)).toEqual([expect.stringMatching(/^set fwd4_tcp element missing or different: /)]);

    const odd = tableOf(document);
    odd.elements.get('fwd4_tcp')!.odd.push(0);
    expect(compareCompactTable(document, odd)).toEqual([expect.stringMatching(/^set fwd4_tcp element missing or different: /)]);
  });

  it('reports a rule added to a chain, a chain or set not declared and a missing marker; a key read twice throws (the caller reads again)', () => {
    const table = tableOf(document);
    table.rules.push({ chain: 'forward' });
    table.chains.push('by-hand');
    table.sets.push('foreign');
    table.sets = table.sets.filter((name) => name !== 'g-abc123');
    const forwardRules = document.nftables.filter((c) => 'add' in c && 'rule' in c.add && c.add.rule.chain === 'forward').length;
    expect(compareCompactTable(document, table)).toEqual([`chain forward has ${forwardRules + 1} rules, expected ${forwardRules}`, 'set g-abc123 is missing', 'chain by-hand is not declared', 'set foreign is not declared']);
    expect(compareCompactTable(document, null)).toContain('chain prerouting is missing');

    const twice = tableOf(document);
    const dnat4 = twice.elements.get('dnat4')!;
    for (const list of [dnat4.keys, dnat4.data, dnat4.comments, dnat4.packets, dnat4.bytes] as unknown[][]) list.push(list[0]);
    expect(() => compareCompactTable(document, twice)).toThrow(/a key came twice/);
  });

  it('counts as the listing reader does: a simple mapping in its elements, the others and block rules in their chains', () => {
    const table = tableOf(document);
    const dnat4 = table.elements.get('dnat4')!;
    dnat4.packets[position(dnat4, key('dnat4', 'tcp', 8080))] = 2;
    const fwd4 = table.elements.get('fwd4_tcp')!;
    fwd4.packets[position(fwd4, key('fwd4_tcp', 8080))] = 10;
    fwd4.bytes[position(fwd4, key('fwd4_tcp', 8080))] = 1000;
    const bound = table.elements.get('fwd4_tcp_addr')!;
    bound.packets[0] = 4;
    bound.bytes[0] = 400;
    for (const rule of table.rules) {
      if (rule.chain === 'm-admin' && rule.counter) rule.counter = { packets: 1, bytes: 60 };
      if (rule.chain === 'b-no-mysql' && rule.counter) rule.counter = { packets: 3, bytes: 180 };
    }
    const { counters, blocked } = countersOfCompact(table);
    const of = (name: string) => counters.find((c) => c.name === name);
    expect(of('web')).toEqual({ name: 'web', description: 'tcp 0.0.0.0:8080', connections: 2, packets: 10, bytes: 1000 });
    expect(of('bound')).toEqual({ name: 'bound', description: 'tcp 198.18.1.1:2222', connections: 0, packets: 4, bytes: 400 });
    expect(of('six')).toMatchObject({ description: 'tcp [::]:8086' });
    expect(of('dns')).toMatchObject({ description: 'udp 0.0.0.0:53' });
    expect(of('admin')).toMatchObject({ connections: 1 });
    expect(blocked).toEqual([{ name: 'no-mysql', packets: 3, bytes: 180 }]);
    // The same names and descriptions as the reader of nft's listing.
    const listing = { nftables: document.nftables.flatMap((c) => ('add' in c ? [c.add] : [])) };
    const fromListing = countersOf(listing as never).counters.map(({ name, description }) => ({ name, description }));
    expect(counters.map(({ name, description }) => ({ name, description })).sort((a, b) => a.name.localeCompare(b.name))).toEqual(fromListing.sort((a, b) => a.name.localeCompare(b.name)));
  });
});

describe("the shape's fingerprint", () => {
  it('ignores the simple mappings and the marker, and follows anything else', () => {
    const more = renderNftDocument(buildModel(parseConfigObject({ ...config, mappings: [...config.mappings!, { name: 'extra', hostPort: 9090, target: '198.18.0.5:80' }] })), { stamp: 'def456' });
    expect(shapeFingerprint(more)).toBe(shapeFingerprint(document));
    const complex = renderNftDocument(buildModel(parseConfigObject({ ...config, mappings: [...config.mappings!, { name: 'pair', hostPort: 9091, targets: ['198.18.0.5:80', '198.18.0.6:80'] }] })), { stamp: 'abc123' });
    expect(shapeFingerprint(complex)).not.toBe(shapeFingerprint(document));
    const blocked = renderNftDocument(buildModel(parseConfigObject({ ...config, block: [] })), { stamp: 'abc123' });
    expect(shapeFingerprint(blocked)).not.toBe(shapeFingerprint(document));
  });
});
