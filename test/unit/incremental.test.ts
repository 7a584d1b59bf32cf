// The engine's incremental flow (docs/operations.md, "How an apply reaches the kernel") against
// the fake backend: no-op without a listing, delta, refused delta -> full path, a delta that
// does not verify -> inverse delta -> full reload -> exit 5, drift -> full, no capability -> full,
// backend switch -> full, old generations, and the agent API (add, replace, remove by name).
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeBackend, fakeWithoutDeltas } from '../../src/backends/fake.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Controller, configHash } from '../../src/engine/controller.js';
import { maxEditDepth, StateStore } from '../../src/engine/state.js';
import { ApplyError, ConfigError, RollbackError } from '../../src/errors.js';

const fileOf = (generation: number): string => `gen-${String(generation).padStart(8, '0')}.json`;

const configA = parseConfigObject({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] });
const configB = parseConfigObject({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'db', hostPort: 5432, target: '198.18.0.4' }] });
const configNet = parseConfigObject({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], masquerade: false }], mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] });
const webCounters = { name: 'web', description: 'tcp 8080', connections: 3, packets: 42, bytes: 4200 };

describe('incremental apply', () => {
  let dir: string;
  let stateDir: string;
  let backend: FakeBackend;
  let controller: Controller;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-incr-'));
    stateDir = join(dir, 'state');
    backend = new FakeBackend();
    controller = await Controller.open({ backend, stateDir });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const webPackets = async (): Promise<number | undefined> => (await controller.status()).mappings.find((m) => m.name === 'web')?.packets;

  it('the first apply is full; an unchanged one is a no-op that lists nothing', async () => {
    expect((await controller.apply(configA)).kind).toBe('full');
    backend.reads = 0;
    const again = await controller.apply(configA);
    expect(again).toMatchObject({ kind: 'noop', changed: false });
    expect(again.generation?.generation).toBe(1);
    expect(backend.reads).toBe(0);
    expect(backend.loads).toBe(1);
    // A fresh controller (a new CLI process) reads the generation from disk: still no listing.
    const fresh = await Controller.open({ backend, stateDir });
    expect((await fresh.apply(configA)).kind).toBe('noop');
    expect(backend.reads).toBe(0);
  });

  it('a change is a delta: no whole-table read, untouched counters survive, status in sync', async () => {
    await controller.apply(configA);
    backend.live!.counters = [{ ...webCounters }];
    backend.reads = 0;
    const result = await controller.apply(configB);
    expect(result).toMatchObject({ kind: 'delta', changed: true, repairedDrift: false });
    expect(result.delta?.summary).toEqual({ added: ['db'], removed: [], changed: [] });
    expect(result.plan.changes.map((c) => `${c.op} ${c.name}`)).toEqual(['add db']);
    expect(backend.reads).toBe(0);
    expect(backend.loads).toBe(1);
    expect(backend.deltas).toBe(1);
    expect(await webPackets()).toBe(42);
    expect((await controller.status()).drift.drifted).toBe(false);
    expect(result.generation?.stamp).toMatch(/^[0-9a-f]{16}$/);
    // The next unchanged apply is a no-op against the delta's stamp.
    expect((await controller.apply(configB)).kind).toBe('noop');
  });

  it('a change the backend cannot express as a delta (a network) takes the full path', async () => {
    await controller.apply(configA);
    const result = await controller.apply(configNet);
    expect(result.kind).toBe('full');
    expect(backend.loads).toBe(2);
    expect(backend.deltas).toBe(0);
  });

  it('a refused delta falls back to the full path, which applies the change', async () => {
    await controller.apply(configA);
    backend.deltaFaults = ['refuse'];
    const result = await controller.apply(configB);
    expect(result).toMatchObject({ kind: 'full', changed: true });
    expect(backend.deltaLog.length).toBe(1);
    expect(backend.loads).toBe(2);
    expect((await controller.status()).drift.drifted).toBe(false);
  });

  it('a refused delta and a refused full load leave the previous ruleset in place', async () => {
    await controller.apply(configA);
    const before = backend.live;
    backend.deltaFaults = ['refuse'];
    backend.failNextLoad = 'Error: Could not process rule: No buffer space available';
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).exitCode).toBe(1);
    expect((error as Error).message).toMatch(/still in place/);
    expect(backend.live).toBe(before);
    expect((await controller.history()).length).toBe(1);
  });

  it('a delta that does not verify is undone by the inverse delta (exit 1, previous ruleset, counters kept)', async () => {
    await controller.apply(configA);
    backend.live!.counters = [{ ...webCounters }];
    backend.deltaFaults = ['corrupt'];
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).exitCode).toBe(1);
    expect((error as Error).message).toMatch(/restored and verified \(by the inverse delta\)/);
    expect(backend.deltaLog.map((d) => d.summary)).toEqual([
      { added: ['db'], removed: [], changed: [] },
      { added: [], removed: ['db'], changed: [] },
    ]);
    expect(backend.loads).toBe(1);
    expect((await controller.history()).length).toBe(1);
    expect((await controller.status()).drift.drifted).toBe(false);
    expect(await webPackets()).toBe(42);
  });

  it('a delta that reports failure after committing is not taken for refused: it is undone (exit 1)', async () => {
    await controller.apply(configA);
    backend.deltaFaults = ['load-then-fail'];
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as Error).message).toMatch(/No buffer space[\s\S]*restored and verified \(by the inverse delta\)/);
    expect(backend.loads).toBe(1);
    expect((await controller.history()).length).toBe(1);
    expect((await controller.apply(configA)).kind).toBe('noop');
  });

  it('when the inverse delta fails too, the previous generation is reloaded whole (exit 1)', async () => {
    await controller.apply(configA);
    backend.deltaFaults = ['corrupt', 'corrupt'];
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as Error).message).toMatch(/restored and verified \(by a full reload of the previous generation\)/);
    expect(backend.loads).toBe(2);
    expect((await controller.status()).drift.drifted).toBe(false);
    expect((await controller.apply(configA)).kind).toBe('noop');
  });

  it('exit 5 (RollbackError) only when the inverse delta and the full reload both fail', async () => {
    await controller.apply(configA);
    backend.deltaFaults = ['corrupt', 'refuse'];
    backend.corruptNextLoad = 'garbage';
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RollbackError);
    expect((error as RollbackError).exitCode).toBe(5);
    expect((error as Error).message).toMatch(/inverse delta failed[\s\S]*reloaded ruleset did not verify[\s\S]*natctl rollback/);
  });

  it('a clobbered table (marker gone) is drift: the full path repairs it', async () => {
    await controller.apply(configA);
    backend.live = { raw: 'tampered', normalized: 'tampered', counters: [], blocked: [] };
    const result = await controller.apply(configB);
    expect(result).toMatchObject({ kind: 'full', repairedDrift: true });
    expect((await controller.status()).drift.drifted).toBe(false);
  });

  it('tampering that keeps the marker is found by a full check: verifyFull, or every Nth cheap apply', async () => {
    const every = await Controller.open({ backend, stateDir, fullCheckEvery: 3 });
    await every.apply(configA);
    const stamp = (await every.history())[0]!.stamp!;
    const tamper = (): void => {
      backend.live = { raw: `tampered\n# natctl stamp ${stamp}\n`, normalized: 'tampered', counters: [], blocked: [] };
    };
    tamper();
    expect((await every.apply(configA)).kind).toBe('noop'); // 1: the marker is all a cheap apply sees
    expect(await controller.apply(configA, { verifyFull: true })).toMatchObject({ kind: 'full', repairedDrift: true });
    tamper();
    expect((await every.apply(configA)).kind).toBe('noop'); // 2
    expect(await every.apply(configA)).toMatchObject({ kind: 'full', repairedDrift: true }); // 3: full check
    expect((await every.apply(configA)).kind).toBe('noop');
  });

  it('a backend without the capabilities always takes the full path (no-op by comparing the listing)', async () => {
    const plain = fakeWithoutDeltas();
    const full = await Controller.open({ backend: plain, stateDir });
    expect((await full.apply(configA)).kind).toBe('full');
    expect((await full.apply(configB)).kind).toBe('full');
    plain.reads = 0;
    expect((await full.apply(configB)).kind).toBe('noop');
    expect(plain.reads).toBeGreaterThan(0);
    expect(plain.loads).toBe(2);
  });

  it('after a backend switch the first apply is full even when the kernel holds the stamp', async () => {
    const hash = configHash('nft', configA);
    await controller.state.record({ backend: 'nft', hash, stamp: hash.slice(0, 16), kind: 'apply', config: configA });
    await backend.load(backend.render((await import('../../src/model/build.js')).buildModel(configA), { stamp: hash.slice(0, 16) }));
    expect((await controller.apply(configA)).kind).toBe('full');
  });

  it('reads generations written before issue 8 (ruleset and live fields) and writes small ones', async () => {
    await controller.state.ensure();
    const old = { generation: 1, time: new Date().toISOString(), backend: 'fake', hash: 'h'.repeat(64), kind: 'apply', config: configA, ruleset: 'old ruleset', live: 'old listing' };
    await writeFile(join(stateDir, 'gen-00000001.json'), JSON.stringify(old), { mode: 0o600 });
    expect((await controller.history()).map((g) => g.ruleset)).toEqual(['old ruleset']);
    expect((await controller.plan(configA)).changes).toEqual([]);
    const result = await controller.apply(configA); // no stamp in the old generation: one full load
    expect(result.kind).toBe('full');
    const written = JSON.parse(await readFile(join(stateDir, 'gen-00000002.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(written).sort()).toEqual(['backend', 'config', 'generation', 'hash', 'kind', 'live', 'stamp', 'time']);
    expect((await controller.apply(configA)).kind).toBe('noop');
    expect((await controller.rollback(1)).kind).toBe('noop'); // generation 1 holds the same config
  });

  it('a big listing is not kept in the generation; drift is then the backend verify of the config render', async () => {
    const many = parseConfigObject({ version: 1, mappings: Array.from({ length: 1500 }, (_, i) => ({ name: `m${i}`, hostPort: 10000 + i, target: `198.18.1.${(i % 250) + 2}:80` })) });
    await controller.apply(many);
    const written = JSON.parse(await readFile(join(stateDir, 'gen-00000001.json'), 'utf8')) as Record<string, unknown>;
    expect(written.live).toBeUndefined();
    expect(written.ruleset).toBeUndefined();
    expect((await controller.status()).drift.drifted).toBe(false);
    backend.live = { ...backend.live!, raw: 'tampered', normalized: 'tampered' };
    const drift = (await controller.status()).drift;
    expect(drift.drifted).toBe(true);
    expect(drift.missing).toEqual(['live ruleset differs from the one loaded']);
  });
});

describe('agent API: mappings by name', () => {
  let dir: string;
  let backend: FakeBackend;
  let controller: Controller;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-agentapi-'));
    backend = new FakeBackend();
    controller = await Controller.open({ backend, stateDir: join(dir, 'state') });
    await controller.apply(configA);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('adds a mapping as a delta on top of the last config, recorded as a generation', async () => {
    backend.live!.counters = [{ ...webCounters }];
    const result = await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4', network: 'lab0' }]);
    expect(result).toMatchObject({ kind: 'delta', changed: true });
    expect(result.plan.changes.map((c) => `${c.op} ${c.name}`)).toEqual(['add db']);
    expect(result.generation?.config.mappings?.map((m) => m.name)).toEqual(['web', 'db']);
    expect(result.generation?.config.networks?.map((n) => n.name)).toEqual(['lab0']);
    expect(backend.loads).toBe(1);
    expect((await controller.status()).mappings.find((m) => m.name === 'web')?.packets).toBe(42);
    // The recorded config is the whole config: applying it again is a no-op.
    expect((await controller.apply(result.generation!.config)).kind).toBe('noop');
  });

  it('takes a Docker -p string', async () => {
    const result = await controller.addMappings([{ name: 'api', publish: '127.0.0.1:9090:90/udp', target: '198.18.0.5', network: 'lab0' }]);
    expect(result.kind).toBe('delta');
    expect(result.plan.changes[0]?.after).toMatchObject({ name: 'api', proto: 'udp', hostIp: '127.0.0.1', hostPorts: { from: 9090, to: 9090 } });
  });

  it('refuses a conflict with an applied mapping, naming both, and changes nothing (exit 2)', async () => {
    const error = await controller.addMappings([{ name: 'other', hostPort: '8000-8100', target: '198.18.0.9' }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).exitCode).toBe(2);
    expect((error as ConfigError).problems).toEqual([{ path: 'add[0]', message: expect.stringMatching(/port 8000-8100, which mappings\[0\] \("web", all addresses port 8080\) already claims/) }]);
    expect((await controller.history()).length).toBe(1);
    expect(backend.deltaLog.length).toBe(0);
  });

  it('refuses a name already applied, an unknown field value, an unknown network and an unknown name to remove', async () => {
    const clash = await controller.addMappings([{ name: 'web', hostPort: 9000, target: '198.18.0.2' }]).catch((e: unknown) => e);
    expect((clash as ConfigError).problems[0]).toMatchObject({ path: 'add[0].name', message: expect.stringMatching(/"web" is already used/) });
    const bad = await controller.addMappings([{ name: 'x', hostPort: 70000, target: '198.18.0.2' } as never]).catch((e: unknown) => e);
    expect((bad as ConfigError).problems[0]?.path).toBe('add[0].hostPort');
    const net = await controller.addMappings([{ name: 'x', hostPort: 9001, target: '198.18.0.2', network: 'nope' }]).catch((e: unknown) => e);
    expect((net as ConfigError).problems[0]).toMatchObject({ path: 'add[0].network', message: expect.stringMatching(/"nope" is not a declared network/) });
    const gone = await controller.removeMappings(['nope']).catch((e: unknown) => e);
    expect((gone as ConfigError).problems).toEqual([{ path: 'remove[0]', message: '"nope" is not an applied mapping' }]);
    expect((await controller.history()).length).toBe(1);
  });

  it('replaces a mapping in place and removes one, each as a delta', async () => {
    await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4' }]);
    const replaced = await controller.replaceMappings([{ name: 'web', hostPort: 8080, target: '198.18.0.3:80' }]);
    expect(replaced.kind).toBe('delta');
    expect(replaced.delta?.summary).toEqual({ added: [], removed: [], changed: ['web'] });
    expect(replaced.generation?.config.mappings?.map((m) => `${m.name} ${m.target}`)).toEqual(['web 198.18.0.3:80', 'db 198.18.0.4']);
    const removed = await controller.removeMappings(['web']);
    expect(removed.delta?.summary).toEqual({ added: [], removed: ['web'], changed: [] });
    expect(removed.generation?.config.mappings?.map((m) => m.name)).toEqual(['db']);
    expect((await controller.status()).drift.drifted).toBe(false);
  });

  it('a replacement may take the ports of the mapping it replaces; replace needs a name', async () => {
    const moved = await controller.changeMappings({ remove: ['web'], add: [{ name: 'web2', hostPort: 8080, target: '198.18.0.7:80' }] });
    expect(moved.delta?.summary).toEqual({ added: ['web2'], removed: ['web'], changed: [] });
    const unnamed = await controller.replaceMappings([{ hostPort: 8080, target: '198.18.0.2' }]).catch((e: unknown) => e);
    expect((unnamed as ConfigError).problems).toEqual([{ path: 'replace[0].name', message: 'is required: a mapping is replaced by name' }]);
  });

  it('with no generation yet, the first add is a full apply of a config holding only it', async () => {
    const fresh = await Controller.open({ backend: new FakeBackend(), stateDir: join(dir, 'other') });
    const result = await fresh.addMappings([{ name: 'web', hostPort: 8080, target: '198.18.0.2' }]);
    expect(result.kind).toBe('full');
    expect(result.generation?.config).toEqual({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2' }] });
  });

  it('records only its edits: a generation the size of the change, read back whole, by a new Controller too', async () => {
    const store = new StateStore(join(dir, 'state'));
    const base = parseConfigObject({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: Array.from({ length: 300 }, (_, i) => ({ name: `m${i}`, hostPort: 10000 + i, target: `198.18.0.${(i % 200) + 2}:80`, network: 'lab0' })) });
    const whole = await controller.apply(base);
    const wholeBytes = (await stat(join(dir, 'state', fileOf(whole.generation!.generation)))).size;
    await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4', network: 'lab0' }]);
    await controller.replaceMappings([{ name: 'm5', hostPort: 10005, target: '198.18.0.9:81', network: 'lab0' }]);
    const removed = await controller.removeMappings(['m7', 'm3']);
    const file = join(dir, 'state', fileOf(removed.generation!.generation));
    const stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(stored).toMatchObject({ parent: removed.generation!.generation - 1, base: whole.generation!.generation, depth: 3, edits: { removed: [7, 3], replaced: [], appended: [] } });
    expect(stored.config).toBeUndefined();
    expect((await stat(file)).size).toBeLessThan(wholeBytes / 20);
    // Read back whole, in the order the agent API built it.
    const expected = [...base.mappings!.map((m) => m.name)].filter((n) => n !== 'm7' && n !== 'm3').concat('db');
    const latest = (await store.latest()).generation!;
    expect(latest.config.mappings!.map((m) => m.name)).toEqual(expected);
    expect(latest.config.mappings!.find((m) => m.name === 'm5')).toMatchObject({ target: '198.18.0.9:81' });
    expect(latest.config).toEqual(removed.generation!.config);
    // A new Controller (another process) starts from it: the same config is a no-op.
    const fresh = await Controller.open({ backend, stateDir: join(dir, 'state') });
    expect((await fresh.apply(removed.generation!.config)).kind).toBe('noop');
    // Rollback to an edits generation re-applies its whole config.
    const back = await fresh.rollback(removed.generation!.generation - 1);
    expect(back.generation?.config.mappings?.map((m) => m.name)).toContain('m7');
  });

  it('a chain of edits is cut by a whole generation every maxEditDepth; pruning keeps what the kept ones need', async () => {
    const store = new StateStore(join(dir, 'state'));
    for (let i = 0; i < maxEditDepth + 3; i++) {
      const result = await controller.addMappings([{ name: `n${i}`, hostPort: 20000 + i, target: '198.18.0.4' }]);
      expect(result.generation?.depth ?? 0).toBe((i + 1) % (maxEditDepth + 1));
    }
    const numbers = await store.numbers();
    // 10 kept, plus the whole generation the oldest kept edits lead back to.
    const { generations, corrupt } = await store.scan();
    expect(corrupt).toEqual([]);
    expect(generations.length).toBe(numbers.length);
    expect(numbers.length).toBeLessThanOrEqual(10 + maxEditDepth);
    expect((await store.latest()).generation!.config.mappings!.length).toBe(1 + maxEditDepth + 3);
  });

  it('an edits generation whose parent is unreadable is corrupt too: skipped and reported, never half-read', async () => {
    const first = await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4' }]);
    await controller.addMappings([{ name: 'db2', hostPort: 5433, target: '198.18.0.5' }]);
    await writeFile(join(dir, 'state', fileOf(first.generation!.generation)), '{ torn');
    const { generations, corrupt } = await new StateStore(join(dir, 'state')).scan();
    expect(generations.map((g) => g.generation)).toEqual([first.generation!.generation - 1]);
    expect(corrupt.map((c) => c.reason)).toEqual([expect.stringMatching(/not valid JSON/), expect.stringMatching(/records edits against generation \d+, which is unreadable/)]);
  });

  it('sends its delta without a marker lookup first; a clobbered table refuses it, and the full path repairs it', async () => {
    const looked: string[] = [];
    const holds = backend.holds.bind(backend);
    backend.holds = async (stamp) => {
      looked.push(stamp);
      return holds(stamp);
    };
    let lookedBeforeLoad = -1;
    const loadDelta = backend.loadDelta.bind(backend);
    backend.loadDelta = async (delta) => {
      lookedBeforeLoad = looked.length;
      return loadDelta(delta);
    };
    expect(await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4', network: 'lab0' }])).toMatchObject({ kind: 'delta' });
    expect(lookedBeforeLoad).toBe(0);
    looked.length = 0;
    backend.live = { raw: 'tampered', normalized: 'tampered', counters: [], blocked: [] };
    const result = await controller.removeMappings(['db']);
    expect(result).toMatchObject({ kind: 'full', changed: true, repairedDrift: true });
    expect(looked.length).toBeGreaterThan(0);
    expect((await controller.status()).mappings.map((m) => m.name)).toEqual(['web']);
    expect((await controller.status()).drift.drifted).toBe(false);
    looked.length = 0;
    expect(await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4', network: 'lab0' }])).toMatchObject({ kind: 'delta' });
    expect(lookedBeforeLoad).toBe(0);
  });

  it('a generation that cannot be recorded undoes the agent delta: exit 1, the previous ruleset, no new generation', async () => {
    const before = backend.live;
    controller.state.record = async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const error = await controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4', network: 'lab0' }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).exitCode).toBe(1);
    expect((error as Error).message).toMatch(/could not be recorded .*ENOSPC[\s\S]*restored and verified/);
    expect(backend.live?.normalized).toBe(before?.normalized);
    expect((await controller.history()).length).toBe(1);
  });

  it('a failed delta of the agent API leaves the previous ruleset and history', async () => {
    backend.deltaFaults = ['corrupt'];
    await expect(controller.addMappings([{ name: 'db', hostPort: 5432, target: '198.18.0.4' }])).rejects.toBeInstanceOf(ApplyError);
    expect((await controller.history()).length).toBe(1);
    expect((await controller.status()).mappings.map((m) => m.name)).toEqual(['web']);
  });
});
