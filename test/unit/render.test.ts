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

  const render = (config: Record<string, unknown>) => renderNftDocument(buildModel(parseConfigObject({ version: 1, ...config })));
  const rulesOf = (config: Record<string, unknown>, chain: string) => render(config).nftables.flatMap((c) => ('add' in c && 'rule' in c.add && c.add.rule.chain === chain ? [c.add.rule] : []));
  const lab0 = (extra: Record<string, unknown> = {}) => ({ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'], ...extra });

  it('takes 0.0.0.0 and :: as host IPs for every local address of the family (Docker\'s meaning)', () => {
    const model = buildModel(parseConfigObject({ version: 1, mappings: [
      { publish: '0.0.0.0:8080:80', target: '198.18.0.2' },
      { hostIp: '0.0.0.0', hostPort: 8081, target: '198.18.0.2:80' },
      { publish: '[::]:8080:80', target: 'fd00:18::2' },
      { hostIp: '0:0:0:0:0:0:0:0', hostPort: 8081, target: '[fd00:18::2]:80' },
    ] }));
    expect(model.mappings.map((m) => `${m.name} ${m.hostIp ?? '*'}`)).toEqual(['tcp-8080 *', 'tcp-8081 *', 'tcp6-8080 *', 'tcp6-8081 *']);
    expect(() => buildModel(parseConfigObject({ version: 1, mappings: [{ publish: '0.0.0.0:8080:80', target: 'fd00:18::2' }] }))).toThrow(/IPv4 but the target is IPv6/);
  });

  it('a loopback binding adds the drop of 127/8 that did not arrive on lo, before DNAT', () => {
    const guard = render({ networks: [lab0()], mappings: [{ publish: '127.0.0.1:6379:6379', target: '198.18.0.3', network: 'lab0' }] })
      .nftables.find((c) => 'add' in c && 'chain' in c.add && c.add.chain.name === 'guard');
    expect(guard).toMatchObject({ add: { chain: { hook: 'prerouting', prio: -150 } } });
    expect(JSON.stringify(rulesOf({ networks: [lab0()], mappings: [{ publish: '127.0.0.1:6379:6379', target: '198.18.0.3', network: 'lab0' }] }, 'guard')[0]?.expr))
      .toBe(JSON.stringify([{ match: { op: '!=', left: { meta: { key: 'iifname' } }, right: 'lo' } }, { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '127.0.0.0', len: 8 } } } }, { drop: null }]));
  });

  it('a block by targetPort matches DNATed connections only (and direct ones into routed networks)', () => {
    const nat = rulesOf({ networks: [lab0()], block: [{ proto: 'tcp', targetPort: 443 }] }, 'block');
    expect(nat).toHaveLength(1);
    expect(JSON.stringify(nat[0]?.expr)).toContain('{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}}');
    const routed = rulesOf({ networks: [lab0({ gatewayMode: 'routed' })], block: [{ proto: 'tcp', targetPort: 443 }] }, 'block');
    expect(routed.map((r) => JSON.stringify(r.expr))).toEqual([
      expect.stringContaining('"right":"dnat"'),
      expect.stringContaining('{"match":{"op":"==","left":{"ct":{"key":"ip daddr","dir":"original"}},"right":{"prefix":{"addr":"198.18.0.0","len":24}}}}'),
      expect.stringContaining('{"match":{"op":"==","left":{"ct":{"key":"ip6 daddr","dir":"original"}},"right":{"prefix":{"addr":"fd00:18::","len":64}}}}'),
    ]);
  });

  it('gateway modes: nat drops direct routed access, nat-unprotected does not, routed lets published targets in', () => {
    const comments = (gatewayMode?: string) => rulesOf({ networks: [lab0(gatewayMode ? { gatewayMode } : {})], mappings: [{ hostPort: 8443, target: '198.18.0.2:443' }] }, 'guard').map((r) => r.comment);
    expect(comments()).toEqual(['natctl direct lab0', 'natctl direct lab0']);
    expect(comments('nat-unprotected')).toEqual([]);
    expect(comments('routed')).toEqual(['natctl routed lab0', 'natctl routed lab0', 'natctl direct lab0', 'natctl routed lab0', 'natctl routed lab0', 'natctl direct lab0']);
    const routed = buildModel(parseConfigObject({ version: 1, networks: [lab0({ gatewayMode: 'routed' })] }));
    expect(routed.networks[0]?.egress).toEqual({ 4: { kind: 'none' }, 6: { kind: 'none' } });
    expect(() => buildModel(parseConfigObject({ version: 1, networks: [lab0({ gatewayMode: 'routed', masquerade: true })] }))).toThrow(/networks\[0\]\.masquerade: cannot be true with gatewayMode "routed"/);
  });

  it('routed: overlapping published targets become disjoint map segments; an allow-list applies unless another mapping opens the port', () => {
    const document = render({ networks: [lab0({ gatewayMode: 'routed' })], mappings: [
      { name: 'a', hostPort: '8000-8009', target: '198.18.0.2:9000-9009', allow: ['198.19.0.2/32'] },
      { name: 'b', hostPort: 8100, target: '198.18.0.2:9005' },
      { name: 'c', hostPort: 8101, target: '198.18.0.2:9009', allow: ['198.19.0.3/32'] },
      { name: 'e', hostPort: '8200-8201', target: '198.18.0.2:9006-9007' },
    ] });
    const direct = document.nftables.flatMap((c) => ('add' in c && 'map' in c.add && c.add.map.name === 'direct4' ? c.add.map.elem ?? [] : []));
    expect(direct.map(([key, verdict]) => `${JSON.stringify((key as { concat: unknown[] }).concat[2])} ${JSON.stringify(verdict)}`)).toEqual([
      '{"range":[9000,9004]} {"jump":{"target":"d-0"}}',
      // b (9005) and e (9006-9007) open their ports to everyone: one element.
      '{"range":[9005,9007]} {"accept":null}',
      '9008 {"jump":{"target":"d-0"}}',
      '9009 {"jump":{"target":"d-1"}}',
    ]);
  });

  it('hairpin: false drops connections DNATed back into their own network; targets in no network get the per-target masquerade', () => {
    const forward = rulesOf({ networks: [lab0({ hairpin: false })] }, 'forward');
    expect(forward[0]?.comment).toBe('natctl no hairpin lab0');
    expect(rulesOf({ networks: [lab0({ hairpin: false })] }, 'postrouting').map((r) => r.comment)).not.toContain('natctl hairpin lab0');
    const post = rulesOf({ mappings: [{ hostPort: 8080, targets: ['198.18.0.2:80', '198.18.0.3:80'] }, { hostPort: 8080, target: '[fd00:18::2]:80' }] }, 'postrouting');
    expect(post.map((r) => JSON.stringify(r.expr))).toEqual([
      expect.stringContaining('{"set":[{"concat":["198.18.0.2","198.18.0.2"]},{"concat":["198.18.0.3","198.18.0.3"]}]}'),
      expect.stringContaining('{"set":[{"concat":["fd00:18::2","fd00:18::2"]}]}'),
    ]);
    // A target inside a declared network is covered by the network's own hairpin rule.
    expect(rulesOf({ networks: [lab0()], mappings: [{ hostPort: 8080, target: '198.18.0.2:80' }] }, 'postrouting').map((r) => r.comment)).not.toContain('natctl hairpin targets outside the networks');
  });
});
