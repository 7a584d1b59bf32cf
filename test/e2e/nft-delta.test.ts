// Incremental changes on a real kernel (docs/ruleset.md, "Incremental changes"), through the
// spawned nft and the in-process addon: a full load carries the stamp's marker; a delta adds
// and removes mappings (simple ones as elements, complex ones with their chains) without
// touching the counters of the others; a refused delta leaves the ruleset byte-identical;
// a replaced table no longer holds the stamp.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import type { NftTransport } from '../../src/backends/nft/transport.js';
import { NativeNftTransport } from '../../src/backends/nft/transport-native.js';
import { SpawnNftTransport } from '../../src/backends/nft/transport-spawn.js';
import { loadNativeBinding, nativeBindingStatus } from '../../src/backends/native.js';
import { BackendFailure } from '../../src/backends/failure.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
const binding = process.env.NATCTL_NATIVE === '0' ? undefined : loadNativeBinding();
const addonRuns = enabled && (binding !== undefined || process.env.CI === 'true');

const base = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', network: 'lab0', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'dns', proto: 'udp', hostPort: 5353, target: `${addr.c2}:53` },
  ],
};
const grown = {
  ...base,
  mappings: [
    ...base.mappings,
    { name: 'extra', hostPort: 8085, target: `${addr.c2}:80` },
    // Complex: two targets keep their chains (m-pair, t-pair-0, t-pair-1, f-pair).
    { name: 'pair', hostPort: 8086, targets: [`${addr.c1}:80`, `${addr.c2}:80`] },
  ],
};
const modelOf = (config: unknown) => buildModel(parseConfigObject(config));

type TransportName = 'spawned nft' | 'addon';
function makeTransport(name: TransportName, netns: string): NftTransport {
  if (name === 'spawned nft') return new SpawnNftTransport({ runner: createRunner(netns) });
  if (!binding) throw new Error(`the in-process addon is not loaded under CI=true: ${JSON.stringify(nativeBindingStatus())}`);
  return new NativeNftTransport(binding, netns);
}

describe.each([
  { name: 'spawned nft' as const, runs: enabled },
  { name: 'addon' as const, runs: addonRuns },
])('incremental nft changes through $name', ({ name, runs }) => {
  const box = new Sandbox(name === 'addon' ? 'dla' : 'dls');
  let backend: NftBackend;
  /** natctl's table as nft's text listing (counters included): what an operator sees. */
  const listing = async (): Promise<string> => (await box.exec(box.host, 'nft', ['list', 'table', 'inet', 'natctl'])).stdout;
  const webCounters = async () => (await backend.read())?.counters.find((c) => c.name === 'web');

  beforeAll(async () => {
    if (!runs) return;
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80], udp: [53] });
    backend = new NftBackend({ runner: createRunner(box.host), transport: makeTransport(name, box.host) });
  });
  afterAll(() => box.destroy());

  it.runIf(runs)('a full load with a stamp holds it; another stamp is not held', async () => {
    expect(await backend.holds('aaaa000000000001')).toBe(false);
    const ruleset = backend.render(modelOf(base), { stamp: 'aaaa000000000001' });
    await backend.load(ruleset);
    expect(backend.verify(ruleset, await backend.read())).toEqual([]);
    expect(await backend.holds('aaaa000000000001')).toBe(true);
    expect(await backend.holds('aaaa000000000002')).toBe(false);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    const web = await webCounters();
    expect(web).toMatchObject({ connections: 2, description: 'tcp 0.0.0.0:8080' });
    expect(web?.packets).toBeGreaterThan(0);
  });

  it.runIf(runs)('a delta adds mappings: packets reach them, the untouched mapping keeps its counters', async () => {
    const before = await webCounters();
    const delta = backend.renderDelta(modelOf(base), modelOf(grown), { from: 'aaaa000000000001', to: 'aaaa000000000002' });
    expect(delta?.summary).toEqual({ added: ['extra', 'pair'], removed: [], changed: [] });
    await backend.loadDelta(delta!);
    expect(await backend.verifyDelta(delta!)).toEqual([]);
    expect(await backend.holds('aaaa000000000002')).toBe(true);
    expect(await backend.holds('aaaa000000000001')).toBe(false);
    // The kernel now holds exactly what a full render of the new model declares.
    expect(backend.verify(backend.render(modelOf(grown), { stamp: 'aaaa000000000002' }), await backend.read())).toEqual([]);
    expect(await webCounters()).toEqual(before);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toBe(`c2 ${addr.ext} 80`);
    const pair = [await box.connect(box.ext, 'tcp', addr.hostUp, 8086), await box.connect(box.ext, 'tcp', addr.hostUp, 8086)];
    expect(pair.sort()).toEqual([`c1 ${addr.ext} 80`, `c2 ${addr.ext} 80`]);
    expect((await backend.read())?.counters.find((c) => c.name === 'extra')?.connections).toBe(1);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await webCounters())?.connections).toBe((before?.connections ?? 0) + 1);
  });

  it.runIf(runs)('a refused delta (the kernel does not hold its `from` stamp) leaves the ruleset byte-identical', async () => {
    const before = await listing();
    const stale = backend.renderDelta(modelOf(grown), modelOf(base), { from: 'aaaa000000000001', to: 'aaaa000000000003' });
    const error = await backend.loadDelta(stale!).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(BackendFailure);
    expect(await listing()).toBe(before);
    expect(await backend.holds('aaaa000000000002')).toBe(true);
  });

  it.runIf(runs)('a delta removes mappings: packets are refused, their chains are gone, the others keep their counters', async () => {
    const before = await webCounters();
    const delta = backend.renderDelta(modelOf(grown), modelOf(base), { from: 'aaaa000000000002', to: 'aaaa000000000003' });
    expect(delta?.summary).toEqual({ added: [], removed: ['extra', 'pair'], changed: [] });
    await backend.loadDelta(delta!);
    expect(await backend.verifyDelta(delta!)).toEqual([]);
    expect(backend.verify(backend.render(modelOf(base), { stamp: 'aaaa000000000003' }), await backend.read())).toEqual([]);
    expect(await listing()).not.toContain('chain m-pair');
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8086)).toMatch(/^ERR/);
    expect(await webCounters()).toEqual(before);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it.runIf(runs)('a delta that changes a mapping re-targets it', async () => {
    const moved = { ...base, mappings: [{ ...base.mappings[0]!, target: `${addr.c2}:80` }, base.mappings[1]!] };
    const delta = backend.renderDelta(modelOf(base), modelOf(moved), { from: 'aaaa000000000003', to: 'aaaa000000000004' });
    expect(delta?.summary.changed).toEqual(['web']);
    await backend.loadDelta(delta!);
    expect(await backend.verifyDelta(delta!)).toEqual([]);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c2 ${addr.ext} 80`);
  });

  it.runIf(runs)('verifyDelta reads the touched elements back: a re-pointed or missing element is caught', async () => {
    const moved = { ...base, mappings: [{ ...base.mappings[0]!, target: `${addr.c2}:80` }, base.mappings[1]!] };
    const delta = backend.renderDelta(modelOf(moved), modelOf({ ...moved, mappings: [...moved.mappings, grown.mappings[2]!] }), { from: 'aaaa000000000004', to: 'aaaa000000000005' });
    await backend.loadDelta(delta!);
    expect(await backend.verifyDelta(delta!)).toEqual([]);
    await box.exec(box.host, 'nft', ['delete element inet natctl dnat4 { tcp . 8085 }']);
    await box.exec(box.host, 'nft', [`add element inet natctl dnat4 { tcp . 8085 comment "extra" : ${addr.c1} . 80 }`]);
    expect((await backend.verifyDelta(delta!)).join('\n')).toMatch(/an element differs from what the delta sent .*dnat4 \{ tcp \. 8085/);
    await box.exec(box.host, 'nft', ['delete element inet natctl fwd4_tcp { 8085 }']);
    expect((await backend.verifyDelta(delta!)).join('\n')).toMatch(/fwd4_tcp element missing: 8085/);
  });

  it.runIf(runs)('a table replaced by hand no longer holds the stamp', async () => {
    expect(await backend.holds('aaaa000000000005')).toBe(true);
    const text = (await listing()).replace(/\tset g-aaaa000000000005 \{[^}]*\}\n/, '');
    await box.exec(box.host, 'nft', ['delete', 'table', 'inet', 'natctl']);
    const loaded = await box.exec(box.host, 'sh', ['-c', `printf '%s' "$1" | nft -f -`, 'sh', text]);
    expect(loaded.exitCode, loaded.stderr).toBe(0);
    expect(await listing()).toContain('map dnat4');
    expect(await backend.holds('aaaa000000000005')).toBe(false);
  });
});
