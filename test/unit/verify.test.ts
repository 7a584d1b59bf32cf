// Verification compares what the kernel holds with what was loaded, object by object and
// rule by rule (issue 7 item 7): a listing that differs in any rule's content is caught, even
// when every count agrees; nft's own harmless rewrites of a batch are not differences.
import { describe, expect, it } from 'vitest';
import type { NftListing } from '../../src/backends/nft/json.js';
import { foreignObjects, listingToBatch, normalizeListing, verifyListing as compareShapes } from '../../src/backends/nft/listing.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';

const document = renderNftDocument(buildModel(parseConfigObject({
  version: 1,
  mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80', allow: ['198.18.5.0/24'] }, { name: 'db', hostPort: 5432, target: '198.18.0.3' }],
})));

/** The listing nft would print for `document`: the added objects, unwrapped. */
function asListing(): NftListing {
  const objects = document.nftables.slice(2).flatMap((c) => ('add' in c ? [structuredClone(c.add)] : []));
  return { nftables: [{ metainfo: { version: '1.0.6' } }, ...objects] } as NftListing;
}

describe('verify', () => {
  it('accepts a listing of exactly what was loaded', () => {
    expect(compareShapes(document, asListing())).toEqual([]);
  });

  it('catches a missing chain, an extra rule and a redirected dispatch entry', () => {
    const noChain = asListing();
    noChain.nftables = noChain.nftables.filter((o) => !('chain' in o && o.chain.name === 'm-web') && !('rule' in o && o.rule.chain === 'm-web'));
    expect(compareShapes(document, noChain)).toContain('chain m-web is missing');

    const extraRule = asListing();
    extraRule.nftables.push({ rule: { family: 'inet', table: 'natctl', chain: 'forward', expr: [{ drop: null }] } });
    expect(compareShapes(document, extraRule)[0]).toMatch(/chain forward has \d+ rules, expected/);

    const redirected = asListing();
    for (const object of redirected.nftables) {
      if ('map' in object && object.map.name === 'fwd4_tcp_chains') object.map.elem = object.map.elem!.map(([key]) => [key, { jump: { target: 'f-db' } }]);
    }
    expect(compareShapes(document, redirected).join('\n')).toMatch(/map fwd4_tcp_chains element missing or different: .*8080.*f-web/);
  });

  it('catches a simple mapping whose data-map element sends it elsewhere, and accepts element counters that counted (docs/ruleset.md)', () => {
    const counted = asListing();
    for (const object of counted.nftables) {
      if ('map' in object && object.map.name === 'dnat4') object.map.elem = object.map.elem!.map(([key, data]) => [JSON.parse(JSON.stringify(key).replace('"packets":0,"bytes":0', '"packets":7,"bytes":420')), data]);
    }
    expect(JSON.stringify(counted)).toContain('"packets":7');
    expect(compareShapes(document, counted)).toEqual([]);
    const retargeted = asListing();
    for (const object of retargeted.nftables) {
      if ('map' in object && object.map.name === 'dnat4') object.map.elem = object.map.elem!.map(([key]) => [key, { concat: ['198.18.0.99', 5432] }]);
    }
    const problems = compareShapes(document, retargeted);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^map dnat4 element missing or different: .*5432.*"db".*198\.18\.0\.3/);
  });

  it('catches a rewritten DNAT target although every count agrees (issue 7 item 7)', () => {
    const tampered = asListing();
    for (const object of tampered.nftables) {
      if (!('rule' in object) || object.rule.chain !== 'm-web') continue;
      object.rule.expr = object.rule.expr.map((statement) => ('dnat' in statement ? { dnat: { family: 'ip', addr: '198.18.0.99', port: 80 } } : statement));
    }
    const problems = compareShapes(document, tampered);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^chain m-web rule 1 differs: kernel holds .*198\.18\.0\.99.*expected .*198\.18\.0\.2/);
  });

  it('catches a changed match, a changed verdict and a changed base chain', () => {
    const listing = asListing();
    for (const object of listing.nftables) {
      if ('rule' in object && object.rule.chain === 'f-web') {
        object.rule.expr = object.rule.expr.map((s) => (JSON.stringify(s).includes('198.18.5.0') ? JSON.parse(JSON.stringify(s).replace('198.18.5.0', '0.0.0.0').replace('"len":24', '"len":0')) : s));
      }
      if ('chain' in object && object.chain.name === 'forward') object.chain.policy = 'drop';
    }
    const problems = compareShapes(document, listing).join('\n');
    expect(problems).toMatch(/chain f-web rule 2 differs/);
    expect(problems).toMatch(/chain forward differs: .*"policy":"drop"/);
  });

  it("accepts nft's own rewrites: one-element sets, `in` listed as `==`, reordered set elements, handles and counters", () => {
    const listing = asListing();
    let handle = 1;
    const rewrite = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(rewrite);
      if (value === null || typeof value !== 'object') return value;
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(value)) {
        if (key === 'set' && Array.isArray(child) && child.length === 1) return rewrite(child[0]);
        if (key === 'set' && Array.isArray(child)) out[key] = [...child].reverse().map(rewrite);
        else if (key === 'op' && child === 'in' && JSON.stringify(value).includes('"set"')) out[key] = '==';
        else if (key === 'counter' && child) out[key] = { packets: 7, bytes: 700 };
        else out[key] = rewrite(child);
      }
      return out;
    };
    listing.nftables = listing.nftables.map((o) => rewrite(o) as typeof o);
    for (const object of listing.nftables) if (!('metainfo' in object)) Object.values(object)[0].handle = handle++;
    for (const object of listing.nftables) if ('map' in object && object.map.elem) object.map.elem.reverse();
    expect(compareShapes(document, listing)).toEqual([]);
  });

  it('accepts the merges nft makes in anonymous sets (adjacent prefixes, a range of addresses, an address inside a prefix), and still catches a wider set', () => {
    const allow = (right: unknown): NftListing['nftables'][number] =>
      ({ rule: { family: 'inet', table: 'natctl', chain: 'f-x', expr: [{ match: { op: '!=', left: { ct: { key: 'ip saddr', dir: 'original' } }, right } }, { drop: null }] } }) as never;
    const doc = { nftables: [{ add: { chain: { family: 'inet', table: 'natctl', name: 'f-x' } } }, { add: allow({ set: [{ prefix: { addr: '198.18.5.0', len: 25 } }, { prefix: { addr: '198.18.5.128', len: 25 } }, '198.18.7.1', '198.18.7.2', '198.18.7.3', '198.18.9.5', { prefix: { addr: '198.18.9.0', len: 24 } }] }) }] } as never;
    const listing = (right: unknown): NftListing => ({ nftables: [{ chain: { family: 'inet', table: 'natctl', name: 'f-x', handle: 1 } }, allow(right)] }) as NftListing;
    // What nft 1.0.6 lists for that set:
    expect(compareShapes(doc, listing({ set: [{ prefix: { addr: '198.18.5.0', len: 24 } }, { range: ['198.18.7.1', '198.18.7.3'] }, { prefix: { addr: '198.18.9.0', len: 24 } }] }))).toEqual([]);
    expect(compareShapes(doc, listing({ set: [{ prefix: { addr: '198.18.5.0', len: 23 } }, { range: ['198.18.7.1', '198.18.7.3'] }, { prefix: { addr: '198.18.9.0', len: 24 } }] }))[0]).toMatch(/chain f-x rule 1 differs/);
    const one = { nftables: [{ add: { chain: { family: 'inet', table: 'natctl', name: 'f-x' } } }, { add: allow({ set: [{ prefix: { addr: '198.18.10.0', len: 24 } }, { prefix: { addr: '198.18.11.0', len: 24 } }] }) }] } as never;
    expect(compareShapes(one, listing({ prefix: { addr: '198.18.10.0', len: 23 } }))).toEqual([]);
  });

  it('names objects added to the table by hand', () => {
    const listing = asListing();
    listing.nftables.push({ set: { family: 'inet', table: 'natctl', name: 'hand', type: 'ipv4_addr', elem: ['198.18.0.9'] } } as never);
    expect(compareShapes(document, listing)).toContain('set hand is not declared');
    expect(foreignObjects(listing)).toEqual(['set hand']);
    expect(foreignObjects(asListing())).toEqual([]);
  });

  it('catches an empty kernel', () => {
    expect(compareShapes(document, null)).toContain('chain prerouting is missing');
  });

  it('turns a listing with objects added by hand back into a batch that recreates them too (issue 7 item 9)', () => {
    const listing = asListing();
    const hand = [
      { set: { family: 'inet', table: 'natctl', name: 'hand', type: 'ipv4_addr', handle: 40, elem: ['198.18.0.9'] } },
      { counter: { family: 'inet', table: 'natctl', name: 'hits', handle: 41, packets: 3, bytes: 180 } },
    ];
    listing.nftables.push(...(hand as never[]));
    const batch = listingToBatch(listing);
    const added = batch.nftables.flatMap((c) => ('add' in c ? [JSON.stringify(c.add)] : []));
    expect(added).toContain(JSON.stringify({ set: { family: 'inet', table: 'natctl', name: 'hand', type: 'ipv4_addr', elem: ['198.18.0.9'] } }));
    expect(added).toContain(JSON.stringify({ counter: { family: 'inet', table: 'natctl', name: 'hits', packets: 3, bytes: 180 } }));
  });

  it('turns a listing back into a batch that recreates it, chains before maps before rules', () => {
    const batch = listingToBatch(asListing());
    const kinds = batch.nftables.slice(3).map((c) => Object.keys((c as { add: object }).add)[0]);
    expect(kinds.indexOf('map')).toBeGreaterThan(kinds.lastIndexOf('chain'));
    expect(kinds.indexOf('rule')).toBeGreaterThan(kinds.lastIndexOf('map'));
    expect(normalizeListing({ nftables: batch.nftables.slice(2).flatMap((c) => ('add' in c ? [c.add] : [])) } as NftListing)).toBe(normalizeListing(asListing()));
  });
});
