// The contract lives in the repository: docs/contract.md carries the names that bind (verbs,
// flags, environment variables, exit codes), and comments cite files of docs/ that exist,
// never a design note outside the repository.
import { readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/topology.js';

async function files(dir: string): Promise<string[]> {
  const entries = await readdir(join(repoRoot, dir), { withFileTypes: true });
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? files(join(dir, e.name)) : Promise.resolve([join(dir, e.name)]))));
  return nested.flat();
}

describe('documentation', () => {
  it('cites docs/ files that exist, never a design note outside the repository', async () => {
    const outside = ['DESIGN', ' §'].join('');
    const all = [...(await files('src')), ...(await files('test')), ...(await files('docs')), ...(await files('scripts')), 'README.md'];
    const offenders: string[] = [];
    const missing: string[] = [];
    for (const file of all.filter((f) => /\.(ts|md|sh)$/.test(f))) {
      const text = await readFile(join(repoRoot, file), 'utf8');
      if (text.includes(outside) || text.includes(['DESIGN', '.md'].join(''))) offenders.push(relative(repoRoot, join(repoRoot, file)));
      for (const [, cited] of text.matchAll(/\b(docs\/[a-z0-9-]+\.md)\b/g)) if (!existsSync(join(repoRoot, cited!))) missing.push(`${file}: ${cited}`);
    }
    expect(offenders).toEqual([]);
    expect(missing).toEqual([]);
  });

  it('docs/contract.md carries the binding names, and the README links it', async () => {
    const contract = await readFile(join(repoRoot, 'docs/contract.md'), 'utf8');
    for (const name of [
      '## §3', '## §4', '## §5', 'gatewayMode', 'hostIp', 'publish', 'targets', 'allow', 'masquerade', 'hairpin', 'outInterface', 'except', 'targetPort',
      'natctl apply -f FILE', 'natctl plan', 'natctl render', 'natctl status', 'natctl rollback', 'natctl history', 'natctl flush', 'natctl doctor', 'natctl schema',
      'natctl watch -f PATH', '--resync', '--listen', '--netns', '--state-dir', '--json', '--lock-timeout', '--dry-run', '--backend',
      'NATCTL_NFT', 'NATCTL_NATIVE=0', 'NATCTL_STATE_DIR', 'rolledBack', 'process.exit',
    ]) expect(contract, name).toContain(name);
    for (const code of [0, 1, 2, 3, 4, 5]) expect(contract).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
    expect(contract).toMatch(/`-f PATH` may name a directory/);
    const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
    expect(readme).toContain('(docs/contract.md)');
  });
});
