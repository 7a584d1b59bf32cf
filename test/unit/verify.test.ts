// Verification compares what the kernel holds with what was loaded: chains, rule counts,
// and every dispatch entry. A listing that differs in any of them is caught.
import { describe, expect, it } from 'vitest';
import type { NftListing } from '../../src/backends/nft/json.js';
import { compareShapes, listingToBatch, normalizeListing } from '../../src/backends/nft/listing.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';

const document = renderNftDocument(buildModel(parseConfigObject({
  version: 1,
  mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'db', hostPort: 5432, target: '198.18.0.3' }],
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
    noChain.nftables = noChain.nftables.filter((o) => !('chain' in o && o.chain.name === 'm-db') && !('rule' in o && o.rule.chain === 'm-db'));
    expect(compareShapes(document, noChain)).toContain('chain m-db is missing');

    const extraRule = asListing();
    extraRule.nftables.push({ rule: { family: 'inet', table: 'natctl', chain: 'forward', expr: [{ drop: null }] } });
    expect(compareShapes(document, extraRule)[0]).toMatch(/chain forward has \d+ rules, expected/);

    const redirected = asListing();
    for (const object of redirected.nftables) {
      if ('map' in object && object.map.name === 'dnat4') object.map.elem = object.map.elem!.map(([key]) => [key, { jump: { target: 'm-web' } }]);
    }
    expect(compareShapes(document, redirected).join('\n')).toMatch(/map element missing or different: dnat4 .*5432.*m-db/);
  });

  it('catches an empty kernel', () => {
    expect(compareShapes(document, null)).toContain('chain prerouting is missing');
  });

  it('turns a listing back into a batch that recreates it, chains before maps before rules', () => {
    const batch = listingToBatch(asListing());
    const kinds = batch.nftables.slice(3).map((c) => Object.keys((c as { add: object }).add)[0]);
    expect(kinds.indexOf('map')).toBeGreaterThan(kinds.lastIndexOf('chain'));
    expect(kinds.indexOf('rule')).toBeGreaterThan(kinds.lastIndexOf('map'));
    expect(normalizeListing({ nftables: batch.nftables.slice(2).flatMap((c) => ('add' in c ? [c.add] : [])) } as NftListing)).toBe(normalizeListing(asListing()));
  });
});
