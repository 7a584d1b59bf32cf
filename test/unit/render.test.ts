// The compiler's output for the documented example, pinned in golden files. Regenerate
// after an intended change with: UPDATE_GOLDEN=1 npx vitest run test/unit/render.test.ts
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { documentToText } from '../../src/backends/nft/text.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { loadModelFile } from '../../src/config/load.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { repoRoot } from '../helpers/topology.js';

function golden(name: string, actual: string): void {
  const file = join(repoRoot, 'test/golden', name);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, actual);
  expect(actual).toBe(readFileSync(file, 'utf8'));
}

describe('nft compiler', () => {
  it('renders the documented example to the golden JSON and text', async () => {
    const { model } = await loadModelFile(join(repoRoot, 'examples/natctl.yaml'));
    const document = renderNftDocument(model);
    golden('example.nft.json', `${JSON.stringify(document, null, 2)}\n`);
    golden('example.nft', documentToText(document));
  });

  it('replaces only its own table, atomically', () => {
    const document = renderNftDocument(buildModel(parseConfigObject({ version: 1 })));
    expect(document.nftables.slice(0, 3)).toEqual([
      { add: { table: { family: 'inet', name: 'natctl' } } },
      { delete: { table: { family: 'inet', name: 'natctl' } } },
      { add: { table: { family: 'inet', name: 'natctl' } } },
    ]);
    const tables = new Set(JSON.stringify(document).match(/"table":"[^"]*"/g));
    expect([...tables]).toEqual(['"table":"natctl"']);
  });

  it('dispatches through maps: the rule count does not grow with the number of mappings', () => {
    const rules = (count: number): number => {
      const mappings = Array.from({ length: count }, (_, i) => ({ name: `m${i}`, hostPort: 10000 + i, target: `198.18.${Math.floor(i / 250)}.${(i % 250) + 2}:80` }));
      const document = renderNftDocument(buildModel(parseConfigObject({ version: 1, mappings })));
      return document.nftables.filter((c) => 'add' in c && 'rule' in c.add && ['prerouting', 'output', 'forward'].includes(c.add.rule.chain)).length;
    };
    expect(rules(1000)).toBe(rules(1));
  });

  it('keeps a range positional: 31000-31002 -> 30000-30002 maps 31001 to 30001', () => {
    const document = renderNftDocument(buildModel(parseConfigObject({ version: 1, mappings: [{ publish: '31000-31002:30000-30002', target: '198.18.0.2' }] })));
    expect(JSON.stringify(document)).toContain('[[31000,30000],[31001,30001],[31002,30002]]');
  });
});
