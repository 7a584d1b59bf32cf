// What status reads (docs/operations.md, "status"): nf_tables netlink element messages decoded
// into nft's JSON form (netlink-read.ts), the counters of a status table, and its comparison
// with the render of the last generation (listing.ts).
import { describe, expect, it } from 'vitest';
import { type StatusTable, compareStatusTable, countersOf, countersOfTable, statusTableListing } from '../../src/backends/nft/listing.js';
import { decodeElementMessage } from '../../src/backends/nft/netlink-read.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import type { NftDocument } from '../../src/backends/nft/json.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { tableNamesOf } from '../helpers/status-table.js';

/** A netlink attribute: length, type, payload, padded to 4 bytes. */
function nla(type: number, ...payload: Buffer[]): Buffer {
  const body = Buffer.concat(payload);
  const out = Buffer.alloc((4 + body.length + 3) & ~3);
  out.writeUInt16LE(4 + body.length, 0);
  out.writeUInt16LE(type, 2);
  body.copy(out, 4);
  return out;
}
const u64 = (value: number): Buffer => {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
};
const cstr = (text: string): Buffer => Buffer.from(`${text}\0`);
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s/g, ''), 'hex');
const counterExpr = (packets: number, bytes: number): Buffer[] => [nla(1, cstr('counter')), nla(2, nla(1, u64(bytes)), nla(2, u64(packets)))];
/** An NFT_MSG_NEWSETELEM payload: nfgenmsg, table, set, the elements. */
const message = (set: string, ...elements: Buffer[]): Buffer => Buffer.concat([Buffer.from([1, 0, 0, 0]), nla(1, cstr('natctl')), nla(2, cstr(set)), nla(3, ...elements.map((e) => nla(1, e)))]);
const comment = (text: string): Buffer => nla(6, Buffer.from([0, text.length + 1]), cstr(text));

describe('netlink element messages', () => {
  it('decodes a dnat4 element (key tcp . 8080, data 198.18.0.2 . 80, comment, counter) as nft lists it', () => {
    const element = Buffer.concat([nla(1, nla(1, hex('06000000 1f900000'))), nla(2, nla(1, hex('c6120002 00500000'))), comment('web'), nla(7, ...counterExpr(3, 180))]);
    expect(decodeElementMessage(message('dnat4', element), 'dnat4')).toEqual([
      [{ elem: { val: { concat: ['tcp', 8080] }, comment: 'web', counter: { packets: 3, bytes: 180 } } }, { concat: ['198.18.0.2', 80] }],
    ]);
  });

  it('decodes forward set elements (a bare port; an IPv6 address . port) and counters in an expression list', () => {
    const port = Buffer.concat([nla(1, nla(1, hex('1f90'))), nla(11, nla(1, ...counterExpr(7, 900)))]);
    expect(decodeElementMessage(message('fwd4_tcp', port), 'fwd4_tcp')).toEqual([{ elem: { val: 8080, counter: { packets: 7, bytes: 900 } } }]);
    const bound = Buffer.concat([nla(1, nla(1, hex('fd000018000000000000000000000002 01bb0000'))), nla(7, ...counterExpr(0, 0))]);
    expect(decodeElementMessage(message('fwd6_udp_addr', bound), 'fwd6_udp_addr')).toEqual([{ elem: { val: { concat: ['fd00:18::2', 443] }, counter: { packets: 0, bytes: 0 } } }]);
  });

  it('decodes an IPv4 host-IP binding and an unknown protocol number, and refuses a key that does not fit the layout', () => {
    const element = Buffer.concat([nla(1, nla(1, hex('c6120101 84000000 00160000'))), nla(2, nla(1, hex('c6120003 00160000'))), comment('ssh')]);
    expect(decodeElementMessage(message('dnat4_addr', element), 'dnat4_addr')).toEqual([
      [{ elem: { val: { concat: ['198.18.1.1', 'sctp', 22] }, comment: 'ssh' } }, { concat: ['198.18.0.3', 22] }],
    ]);
    const odd = Buffer.concat([nla(1, nla(1, hex('21000000 00160000'))), nla(2, nla(1, hex('c6120003 00160000')))]);
    expect(decodeElementMessage(message('dnat4', odd), 'dnat4')[0]).toEqual([{ elem: { val: { concat: [33, 22] } } }, { concat: ['198.18.0.3', 22] }]);
    const short = Buffer.concat([nla(1, nla(1, hex('06000000'))), nla(2, nla(1, hex('c6120003 00160000')))]);
    expect(() => decodeElementMessage(message('dnat4', short), 'dnat4')).toThrow(/dnat4: an element's key \(.*\) is not proto \. port/);
    expect(() => decodeElementMessage(message('dnat4_tcp_chains', short), 'dnat4_tcp_chains')).toThrow(/holds no simple mappings/);
  });
});

const config = parseConfigObject({
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: '198.18.0.2:80' },
    { name: 'admin', hostPort: 8443, target: '198.18.0.3:443', allow: ['198.19.0.0/24'] },
    { name: 'dns', hostPort: 53, proto: 'udp', target: '198.18.0.3:53' },
  ],
  block: [{ name: 'no-mysql', proto: 'tcp', hostPort: 3306 }],
});
const document = renderNftDocument(buildModel(config), { stamp: 'abc123' });

/** What the kernel holds right after loading `doc`, as status reads it over netlink. */
function tableOf(doc: NftDocument): StatusTable {
  const elements: StatusTable['elements'] = {};
  return { ...tableNamesOf(doc, (name, items) => void (elements[name] = structuredClone(items))), elements };
}

describe('status table', () => {
  it('agrees with the render it was loaded from, counters that counted included', () => {
    const table = tableOf(document);
    expect(compareStatusTable(document, table)).toEqual([]);
    const web = table.elements.dnat4!.find((e) => JSON.stringify(e).includes('"web"')) as [{ elem: { counter: { packets: number; bytes: number } } }, unknown];
    web[0].elem.counter = { packets: 4, bytes: 240 };
    expect(compareStatusTable(document, table)).toEqual([]);
  });

  it('names what differs: a missing element, an element sent elsewhere, a rule or chain added by hand, a missing marker', () => {
    const missing = tableOf(document);
    missing.elements.dnat4 = missing.elements.dnat4!.filter((e) => !JSON.stringify(e).includes('"web"'));
    expect(compareStatusTable(document, missing)).toEqual(['map dnat4 has 1 elements, expected 2', expect.stringMatching(/^map dnat4 element missing or different: .*"web"/)]);

    const moved = tableOf(document);
    const [, data] = moved.elements.dnat4![0] as [unknown, { concat: unknown[] }];
    data.concat[0] = '198.18.0.9';
    expect(compareStatusTable(document, moved)).toEqual([expect.stringMatching(/^map dnat4 element missing or different: /)]);

    const added = tableOf(document);
    added.rules.push({ chain: 'forward' });
    added.chains.push('by-hand');
    const forwardRules = document.nftables.filter((c) => 'add' in c && 'rule' in c.add && c.add.rule.chain === 'forward').length;
    expect(compareStatusTable(document, added)).toEqual([`chain forward has ${forwardRules + 1} rules, expected ${forwardRules}`, 'chain by-hand is not declared']);

    const unmarked = tableOf(document);
    unmarked.sets = unmarked.sets.filter((name) => name !== 'g-abc123');
    expect(compareStatusTable(document, unmarked)).toEqual(['set g-abc123 is missing']);
    expect(compareStatusTable(document, null)).toContain('chain prerouting is missing');
  });

  it("counts a simple mapping in its elements and a complex one and a block rule in their chains' rules", () => {
    const table = tableOf(document);
    const web = table.elements.dnat4!.find((e) => JSON.stringify(e).includes('"web"')) as [{ elem: { counter: { packets: number; bytes: number } } }, unknown];
    web[0].elem.counter = { packets: 2, bytes: 120 };
    const forward = table.elements.fwd4_tcp!.find((e) => JSON.stringify(e).includes('8080')) as { elem: { counter: { packets: number; bytes: number } } };
    forward.elem.counter = { packets: 10, bytes: 1000 };
    for (const rule of table.rules) {
      if (rule.chain === 'm-admin' && rule.counter) rule.counter = { packets: 1, bytes: 60 };
      if (rule.chain === 'f-admin' && rule.counter) rule.counter = { packets: 5, bytes: 500 };
      if (rule.chain === 'b-no-mysql' && rule.counter) rule.counter = { packets: 3, bytes: 180 };
    }
    const { counters, blocked } = countersOf(statusTableListing(table));
    const of = (name: string) => counters.find((c) => c.name === name);
    expect(of('web')).toEqual({ name: 'web', description: 'tcp 0.0.0.0:8080', connections: 2, packets: 10, bytes: 1000 });
    expect(of('admin')).toMatchObject({ connections: 1, packets: 5, bytes: 500 });
    expect(of('dns')).toMatchObject({ description: 'udp 0.0.0.0:53', connections: 0, packets: 0 });
    expect(blocked).toEqual([{ name: 'no-mysql', packets: 3, bytes: 180 }]);
  });
});

describe('status through nft (no netlink reader)', () => {
  it('lists the table once, counts and compares in full; a missing table is an inactive, empty status', async () => {
    const { NftBackend } = await import('../../src/backends/nft/backend.js');
    const { ScriptedNftTransport } = await import('../../src/backends/nft/transport-fake.js');
    const { createRunner } = await import('../../src/backends/exec.js');
    const model = buildModel(config);
    const listing = { nftables: document.nftables.flatMap((c) => ('add' in c ? [c.add] : [])) };
    const transport = new ScriptedNftTransport().then('list', { stdout: JSON.stringify(listing) }).then('list', { exitCode: 1, stderr: 'Error: No such file or directory\n' });
    const backend = new NftBackend({ runner: createRunner(), transport });
    const reading = await backend.readStatus(() => ({ model, stamp: 'abc123' }));
    expect(reading).toMatchObject({ active: true, problems: [] });
    expect(reading.counters.map((c) => c.name).sort()).toEqual(['admin', 'dns', 'web']);
    expect(reading.blocked).toEqual([{ name: 'no-mysql', packets: 0, bytes: 0 }]);
    expect(transport.calls).toEqual([{ op: 'list', args: ['table', 'inet', 'natctl'] }]);
    const none = await backend.readStatus(() => ({ model, stamp: 'abc123' }));
    expect(none).toMatchObject({ active: false, counters: [], blocked: [] });
    expect(none.problems).toContain('chain prerouting is missing');
  });
});

describe('status over netlink, and its fallback', () => {
  it('uses the netlink reader without running nft; a reader that fails (say, a commit between its dumps) falls back to one nft listing', async () => {
    const { NftBackend } = await import('../../src/backends/nft/backend.js');
    const { ScriptedNftTransport } = await import('../../src/backends/nft/transport-fake.js');
    const { createRunner } = await import('../../src/backends/exec.js');
    const model = buildModel(config);
    const quiet = new ScriptedNftTransport();
    const overNetlink = new NftBackend({ runner: createRunner(), transport: quiet, statusTable: async () => tableOf(document) });
    expect(await overNetlink.readStatus(() => ({ model, stamp: 'abc123' }))).toMatchObject({ active: true, problems: [] });
    expect(quiet.calls).toEqual([]);

    const listing = { nftables: document.nftables.flatMap((c) => ('add' in c ? [c.add] : [])) };
    const transport = new ScriptedNftTransport().then('list', { stdout: JSON.stringify(listing) });
    const failing = new NftBackend({ runner: createRunner(), transport, statusTable: () => Promise.reject(new Error('the ruleset changed while status read it')) });
    expect(await failing.readStatus(() => ({ model, stamp: 'abc123' }))).toMatchObject({ active: true, problems: [] });
    expect(transport.calls).toEqual([{ op: 'list', args: ['table', 'inet', 'natctl'] }]);
  });

  it('reads counters from the table as countersOf does from its listing, drifted and undeclared elements included', () => {
    const table = tableOf(document);
    const web = table.elements.dnat4!.find((e) => JSON.stringify(e).includes('"web"')) as [{ elem: { counter: { packets: number; bytes: number } } }, { concat: unknown[] }];
    web[0].elem.counter = { packets: 2, bytes: 120 };
    web[1].concat[0] = '198.18.0.9';
    const forward = table.elements.fwd4_tcp!.find((e) => JSON.stringify(e).includes('8080')) as { elem: { counter: { packets: number; bytes: number } } };
    forward.elem.counter = { packets: 10, bytes: 1000 };
    table.elements.dnat6 = [[{ elem: { val: { concat: ['tcp', 9000] }, comment: 'by-hand', counter: { packets: 1, bytes: 0 } } }, { concat: ['fd00::9', 80] }]];
    for (const rule of table.rules) if (rule.chain === 'b-no-mysql' && rule.counter) rule.counter = { packets: 3, bytes: 180 };
    const read = countersOfTable(table);
    const { counters, blocked } = countersOf(statusTableListing(table));
    expect(read.counters).toEqual(counters);
    expect(read.counters.find((c) => c.name === 'web')).toMatchObject({ connections: 2, packets: 10, bytes: 1000 });
    expect(read.counters.find((c) => c.name === 'by-hand')).toMatchObject({ connections: 1 });
    expect(read.blocked).toEqual(blocked);
    expect(blocked).toEqual([{ name: 'no-mysql', packets: 3, bytes: 180 }]);
  });
});
