// The lean ruleset and incremental changes of the nft backend (docs/ruleset.md), without a
// kernel: what render and renderDelta send, and what the backend does with nft's answers
// (scripted transport). The same on a real kernel: test/e2e/nft-delta.test.ts.
import { describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import { BackendFailure } from '../../src/backends/failure.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { ScriptedNftTransport } from '../../src/backends/nft/transport-fake.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';

const lab0 = { name: 'lab0', subnets: ['198.18.0.0/24'] };
const web = { name: 'web', network: 'lab0', hostPort: 8080, target: '198.18.0.2:80' };
const extra = { name: 'extra', network: 'lab0', hostPort: 8085, target: '198.18.0.3:80' };
const pair = { name: 'pair', network: 'lab0', hostPort: 8086, targets: ['198.18.0.2:80', '198.18.0.3:80'] };
const model = (mappings: unknown[], more: Record<string, unknown> = {}) => buildModel(parseConfigObject({ version: 1, networks: [lab0], mappings, ...more }));
const backendOver = (transport = new ScriptedNftTransport()) => new NftBackend({ runner: createRunner(), transport });
const stamp = { from: '0a', to: '0b' };

describe('the lean ruleset', () => {
  it('a simple mapping is elements only, counted and named; a complex one keeps its chains', () => {
    const text = backendOver().render(model([web, pair])).text;
    expect(text).toMatch(/^add table inet natctl\ndelete table inet natctl\ntable inet natctl \{/);
    expect(text).toContain('elements = { tcp . 8080 comment "web" : 198.18.0.2 . 80 }');
    expect(text).toContain('elements = { 8080 }');
    expect(text).not.toContain('chain m-web');
    expect(text).toContain('chain m-pair');
    expect(text).toContain('8086 : jump m-pair');
    // Hash maps on the hot path; interval only in the small per-protocol chain maps.
    expect(text).toMatch(/map dnat4 \{\n\t\ttype inet_proto \. inet_service : ipv4_addr \. inet_service\n\t\tcounter\n/);
    expect(text).toContain('dnat ip to meta l4proto . th dport map @dnat4');
  });

  it('a stamp adds the marker set named after it; no stamp, no marker', () => {
    const document = (s?: string) => JSON.stringify(renderNftDocument(model([web]), s === undefined ? {} : { stamp: s }));
    expect(document('0123abcd')).toContain('"name":"g-0123abcd","type":"mark"');
    expect(document()).not.toContain('"g-');
    expect(() => backendOver().render(model([web]), { stamp: 'not hex' })).toThrow(/stamp/);
  });
});

describe('renderDelta', () => {
  it('adding a simple mapping is an element-only batch that swaps the marker first', () => {
    const delta = backendOver().renderDelta(model([web]), model([web, extra]), stamp)!;
    expect(delta.summary).toEqual({ added: ['extra'], removed: [], changed: [] });
    expect(delta.text).toBe([
      'delete set inet natctl g-0a',
      'add set inet natctl g-0b { type mark; }',
      'add element inet natctl dnat4 { tcp . 8085 comment "extra" : 198.18.0.3 . 80 }',
      'add element inet natctl fwd4_tcp { 8085 }',
      '',
    ].join('\n'));
  });

  it('removing a complex mapping deletes its elements, and its chains only in a second batch (kernels before 6.2)', () => {
    const delta = backendOver().renderDelta(model([web, pair]), model([web]), stamp)!;
    expect(delta.summary.removed).toEqual(['pair']);
    const [main, cleanup] = delta.text.split('# after the batch above committed (docs/ruleset.md):\n');
    expect(main).toContain('delete element inet natctl dnat4_tcp_chains { 8086 }');
    expect(main).not.toContain('delete chain');
    expect(cleanup).toBe('delete chain inet natctl m-pair\ndelete chain inet natctl t-pair-0\ndelete chain inet natctl t-pair-1\ndelete chain inet natctl f-pair\n');
  });

  it('a changed mapping is deleted and re-added; unchanged mappings are not mentioned', () => {
    const delta = backendOver().renderDelta(model([web, extra]), model([web, { ...extra, target: '198.18.0.4:80' }]), stamp)!;
    expect(delta.summary).toEqual({ added: [], removed: [], changed: ['extra'] });
    expect(delta.text).not.toContain('8080');
    expect(delta.text).toContain('delete element inet natctl dnat4 { tcp . 8085 }\n');
    expect(delta.text).toContain('add element inet natctl dnat4 { tcp . 8085 comment "extra" : 198.18.0.4 . 80 }');
  });

  it('is undefined (a full load) when networks, snat or block rules change, or a mapping feeds shared rules', () => {
    const backend = backendOver();
    expect(backend.renderDelta(model([web]), model([web], { networks: [{ ...lab0, hairpin: false }] }), stamp)).toBeUndefined();
    expect(backend.renderDelta(model([web]), model([web], { snat: [{ source: '198.18.1.0/24', masquerade: true }] }), stamp)).toBeUndefined();
    expect(backend.renderDelta(model([web]), model([web], { block: [{ name: 'b', proto: 'tcp', hostPort: 22 }] }), stamp)).toBeUndefined();
    // A target outside the declared networks adds a hairpin masquerade; a loopback binding a guard and a masquerade.
    expect(backend.renderDelta(model([web]), model([web, { name: 'out', hostPort: 9000, target: '198.19.0.2:80' }]), stamp)).toBeUndefined();
    expect(backend.renderDelta(model([web]), model([web, { ...extra, hostIp: '127.0.0.1' }]), stamp)).toBeUndefined();
  });
});

describe('holds / loadDelta over a scripted nft', () => {
  it('holds lists only the marker set', async () => {
    const transport = new ScriptedNftTransport().then('list').then('list', { exitCode: 1, stderr: 'Error: No such file or directory\n' });
    const backend = backendOver(transport);
    expect(await backend.holds('0a')).toBe(true);
    expect(await backend.holds('0b')).toBe(false);
    expect(await backend.holds('NOT-HEX')).toBe(false);
    expect(transport.calls).toEqual([{ op: 'list', args: ['set', 'inet', 'natctl', 'g-0a'] }, { op: 'list', args: ['set', 'inet', 'natctl', 'g-0b'] }]);
  });

  it('loads the main batch, then the deferred chain deletes', async () => {
    const transport = new ScriptedNftTransport().then('run').then('run');
    const backend = backendOver(transport);
    const delta = backend.renderDelta(model([web, pair]), model([web]), stamp)!;
    await backend.loadDelta(delta);
    expect(transport.calls.map((c) => (c.op === 'run' ? c.batch.split('\n')[0] : c.op))).toEqual(['delete set inet natctl g-0a', 'delete chain inet natctl m-pair']);
  });

  it('a refused delta throws and sends nothing more', async () => {
    const transport = new ScriptedNftTransport().then('run', { exitCode: 1, stderr: 'Error: No such file or directory; did you mean set ‘g-0c’\n' });
    const backend = backendOver(transport);
    const delta = backend.renderDelta(model([web, pair]), model([web]), stamp)!;
    await expect(backend.loadDelta(delta)).rejects.toBeInstanceOf(BackendFailure);
    expect(transport.calls).toHaveLength(1);
    expect(transport.pending).toHaveLength(0);
  });
});
