// The committed config reference and JSON Schema are what the zod schema generates.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchemaText, configReferenceMarkdown } from '../../src/tools/reference.js';
import { repoRoot } from '../helpers/topology.js';

describe('generated docs', () => {
  it('docs/config-reference.md matches the schema (run npm run build to refresh)', () => {
    expect(readFileSync(join(repoRoot, 'docs/config-reference.md'), 'utf8')).toBe(configReferenceMarkdown());
  });
  it('schema/config-v1.json matches the schema', () => {
    expect(readFileSync(join(repoRoot, 'schema/config-v1.json'), 'utf8')).toBe(configJsonSchemaText());
  });
  it('every field of the config is documented', () => {
    const rows = configReferenceMarkdown().split('\n').filter((l) => l.startsWith('| `'));
    for (const row of rows) expect(row.split('|')[4]?.trim(), row).not.toBe('');
  });
});
