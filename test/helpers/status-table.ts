// What status reads of natctl's table right after a batch was loaded, for the unit tests of its
// comparisons (status-compare, status-read): every chain, set and map by name, every rule with
// its counter at zero and its comment, and the elements of the simple mappings' maps and sets,
// which each reading holds its own way.
import type { NftDocument } from '../../src/backends/nft/json.js';
import type { StatusTable } from '../../src/backends/nft/listing.js';

/** The maps and sets of simple mappings (docs/ruleset.md), whose elements status reads. */
const simpleSet = /^(dnat[46](_addr)?|fwd[46]_[a-z]+(_addr)?)$/;

/** The table `doc` loads, but for the elements, which go to `elements` per simple mappings' map or set. */
export function tableNamesOf(doc: NftDocument, elements: (name: string, items: unknown[]) => void): Omit<StatusTable, 'elements'> {
  const table: Omit<StatusTable, 'elements'> = { chains: [], sets: [], maps: [], rules: [] };
  for (const command of doc.nftables) {
    if (!('add' in command)) continue;
    const object = command.add;
    if ('chain' in object) table.chains.push(object.chain.name);
    else if ('rule' in object) table.rules.push({ chain: object.rule.chain, ...(object.rule.expr.some((s) => 'counter' in s) ? { counter: { packets: 0, bytes: 0 } } : {}), ...(object.rule.comment ? { comment: object.rule.comment } : {}) });
    else if ('map' in object || 'set' in object) {
      const body = 'map' in object ? object.map : object.set;
      ('map' in object ? table.maps : table.sets).push(body.name);
      if (simpleSet.test(body.name)) elements(body.name, (body.elem ?? []) as unknown[]);
    }
  }
  return table;
}
