// The nft backend's kernel tests, run both ways: through the spawned nft binary and through the
// in-process libnftables addon (native/), in a namespace the addon enters on a thread of its own.
// Each transport loads, reads back, verifies, is tampered with, restores, refuses a bad batch
// without touching what the kernel holds, and forwards packets; the CLI and the library use the
// addon with --netns / netns without spawning nft, and fall back to nft when it is disabled or
// missing. Under CI=true (setup installs libnftables-dev) a missing addon fails these tests.
import { chmod, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LiveState, Ruleset } from '../../src/backends/backend.js';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import type { NftListing } from '../../src/backends/nft/json.js';
import { normalizeListing } from '../../src/backends/nft/listing.js';
import type { NftResult, NftTransport } from '../../src/backends/nft/transport.js';
import { NativeNftTransport } from '../../src/backends/nft/transport-native.js';
import { SpawnNftTransport } from '../../src/backends/nft/transport-spawn.js';
import { loadNativeBinding, nativeBindingStatus } from '../../src/backends/native.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Controller } from '../../src/engine/controller.js';
import { ApplyError, BackendCommandError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
const binding = process.env.NATCTL_NATIVE === '0' ? undefined : loadNativeBinding();
/** Under CI the addon must be there: setup.sh installs libnftables-dev and npm ci builds it. */
const addonRequired = process.env.CI === 'true';
const addonRuns = enabled && (binding !== undefined || addonRequired);

const configA = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', network: 'lab0', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'dns', proto: 'udp', hostPort: 5353, target: `${addr.c2}:53` },
  ],
};
const configB = { ...configA, mappings: [...configA.mappings, { name: 'extra', hostPort: 8085, target: `${addr.c2}:80` }] };

type TransportName = 'spawned nft' | 'addon';

function makeTransport(name: TransportName, netns: string): NftTransport {
  if (name === 'spawned nft') return new SpawnNftTransport({ runner: createRunner(netns) });
  if (!binding) throw new Error(`the in-process addon is not loaded under CI=true: ${JSON.stringify(nativeBindingStatus())}`);
  return new NativeNftTransport(binding, netns);
}

/** A transport that commits the first batch for real and then reports failure, like a kernel that errs after loading. */
class FailAfterFirstLoad implements NftTransport {
  readonly kind: NftTransport['kind'];
  readonly description = 'fails after its first load';
  private failed = false;
  constructor(private readonly inner: NftTransport) {
    this.kind = inner.kind;
  }
  async run(batch: string, options: { check: boolean }): Promise<NftResult> {
    const result = await this.inner.run(batch, options);
    if (options.check || this.failed || result.exitCode !== 0) return result;
    this.failed = true;
    return { ...result, exitCode: 1, stderr: 'Error: Could not process rule: No buffer space available\n' };
  }
  list(args: readonly string[]): Promise<NftResult> {
    return this.inner.list(args);
  }
  version(): Promise<string> {
    return this.inner.version();
  }
}

describe.each([
  { name: 'spawned nft' as const, runs: enabled },
  { name: 'addon' as const, runs: addonRuns },
])('the nft backend on a real kernel through $name', ({ name, runs }) => {
  const box = new Sandbox(name === 'addon' ? 'tra' : 'trs');
  let backend: NftBackend;
  let rulesetA: Ruleset;
  let liveA: LiveState | null = null;
  /** What an independent reader (nft in the namespace) sees, normalized. */
  const kernel = async (): Promise<string | null> => {
    const result = await box.exec(box.host, 'nft', ['-j', 'list', 'table', 'inet', 'natctl']);
    return result.exitCode === 0 ? normalizeListing(JSON.parse(result.stdout) as NftListing) : null;
  };

  beforeAll(async () => {
    if (!runs) return;
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80], udp: [53] });
    backend = new NftBackend({ runner: createRunner(box.host), transport: makeTransport(name, box.host) });
    rulesetA = backend.render(buildModel(parseConfigObject(configA)));
  });
  afterAll(() => box.destroy());

  it.runIf(runs)('checks without committing, loads, reads back what the kernel holds, and forwards', async () => {
    expect(backend.transport.kind).toBe(name === 'addon' ? 'addon' : 'spawn');
    expect(await backend.read()).toBeNull();
    await backend.check(rulesetA);
    expect(await kernel()).toBeNull();
    await backend.load(rulesetA);
    liveA = await backend.read();
    expect(liveA).not.toBeNull();
    expect(backend.verify(rulesetA, liveA)).toEqual([]);
    expect(liveA?.normalized).toBe(await kernel());
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it.runIf(runs)('sees tampering, and restores exactly what it read', async () => {
    await box.exec(box.host, 'nft', ['flush', 'table', 'inet', 'natctl']);
    const tampered = await backend.read();
    expect(backend.verify(rulesetA, tampered).length).toBeGreaterThan(0);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toMatch(/^ERR/);
    await backend.restore(liveA);
    const restored = await backend.read();
    expect(restored?.normalized).toBe(liveA?.normalized);
    expect(backend.verify(rulesetA, restored)).toEqual([]);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it.runIf(runs)('refuses a bad batch with nft\'s error text, in check mode and for real, and the kernel keeps its ruleset', async () => {
    const bad: Ruleset = { backend: 'nft', text: JSON.stringify({ nftables: [
      { add: { table: { family: 'inet', name: 'natctl' } } },
      { add: { rule: { family: 'inet', table: 'natctl', chain: 'no-such-chain', expr: [{ accept: null }] } } },
    ] }) };
    const before = await kernel();
    for (const attempt of [() => backend.check(bad), () => backend.load(bad)]) {
      const error = await attempt().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(BackendCommandError);
      expect((error as BackendCommandError).stderr).toMatch(/Error: Could not process rule: No such file or directory/);
      expect(await kernel()).toBe(before);
    }
  });

  it.runIf(runs)('runs batches in nft\'s text syntax too, and lists what it asks for', async () => {
    const added = await backend.transport.run('add table inet nctext\nadd chain inet nctext c\n', { check: false });
    expect(added.exitCode, added.stderr).toBe(0);
    const listed = await backend.transport.list(['table', 'inet', 'nctext']);
    expect(JSON.parse(listed.stdout).nftables.filter((o: object) => 'chain' in o)).toHaveLength(1);
    expect((await backend.transport.run('delete table inet nctext\n', { check: false })).exitCode).toBe(0);
    expect((await box.exec(box.host, 'nft', ['list', 'tables'])).stdout).not.toContain('nctext');
  });

  it.runIf(runs)('keeps working after a call bigger than 1 MB (the addon frees its context then, native/src/natctl_nft.cc)', async () => {
    const padding = `# ${'x'.repeat(1 << 20)}\n`;
    const added = await backend.transport.run(`${padding}add table inet ncbig\nadd chain inet ncbig c\n`, { check: false });
    expect(added.exitCode, added.stderr).toBe(0);
    const listed = await backend.transport.list(['table', 'inet', 'ncbig']);
    expect(JSON.parse(listed.stdout).nftables.filter((o: object) => 'chain' in o)).toHaveLength(1);
    expect((await backend.transport.run('delete table inet ncbig\n', { check: false })).exitCode).toBe(0);
    expect((await box.exec(box.host, 'nft', ['list', 'tables'])).stdout).not.toContain('ncbig');
    expect(backend.verify(rulesetA, await backend.read())).toEqual([]);
  });

  it.runIf(runs)('an apply whose load fails after loading is rolled back through the same transport', async () => {
    const failing = new NftBackend({ runner: createRunner(box.host), transport: new FailAfterFirstLoad(makeTransport(name, box.host)) });
    const controller = await Controller.open({ backend: failing, netns: box.host, stateDir: join(box.workDir, 'state-fail') });
    const before = await kernel();
    const error = await controller.apply(parseConfigObject(configB)).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).rolledBack).toBe(true);
    expect(await kernel()).toBe(before);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it.runIf(runs)('flushes natctl\'s table and nothing else', async () => {
    await box.exec(box.host, 'nft', ['add', 'table', 'ip', 'other']);
    await backend.flush();
    expect(await backend.read()).toBeNull();
    expect((await box.exec(box.host, 'nft', ['list', 'tables'])).stdout).toContain('table ip other');
  });
});

describe.runIf(enabled)('natctl picks the in-process path, or falls back to nft', () => {
  const box = new Sandbox('trc');
  let wrapDir = '';
  let callLog = '';
  let fileA = '';
  let fileB = '';
  /** natctl with an nft on PATH that logs every call and runs the real nft. */
  const natctl = (args: string[], env: Record<string, string> = {}) => box.natctl(args, { PATH: `${wrapDir}:${process.env.PATH ?? ''}`, NFT_CALL_LOG: callLog, ...env });
  const nftCalls = async (): Promise<string[]> => (await readFile(callLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80], udp: [53] });
    wrapDir = join(box.workDir, 'bin');
    callLog = join(box.workDir, 'nft-calls.log');
    await mkdir(wrapDir);
    const realNft = (await box.exec(box.host, 'sh', ['-c', 'command -v nft'])).stdout.trim();
    await writeFile(join(wrapDir, 'nft'), `#!/bin/sh\necho "$*" >> "$NFT_CALL_LOG"\nexec ${realNft} "$@"\n`);
    await chmod(join(wrapDir, 'nft'), 0o755);
    fileA = await box.writeConfig('a.json', configA);
    fileB = await box.writeConfig('b.json', configB);
  });
  afterAll(() => box.destroy());

  it.runIf(addonRuns)('the CLI applies with --netns through the addon: no nft process, no ip netns exec for nft', async () => {
    const applied = await natctl(['--verbose', 'apply', '-f', fileB]);
    expect(applied.stderr).toMatch(/^natctl: nft transport: in-process libnftables \S+ \(native addon, a worker thread enters netns nc-trc-/m);
    expect(applied.exitCode).toBe(0);
    const status = await natctl(['status', '--json']);
    expect(status.exitCode).toBe(0);
    expect((JSON.parse(status.stdout) as { mappings: { name: string; state: string }[] }).mappings.map((m) => `${m.name} ${m.state}`).sort()).toEqual(['dns active', 'extra active', 'web active']);
    expect(await nftCalls()).toEqual([]);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toBe(`c2 ${addr.ext} 80`);
  });

  it.runIf(addonRuns)('the library\'s netns option uses the addon too', async () => {
    const controller = await Controller.open({ netns: box.host, stateDir: join(box.workDir, 'lib-state') });
    expect((controller.backend as NftBackend).transport.kind).toBe('addon');
    const result = await controller.apply(parseConfigObject(configA));
    expect(result.generation).toBeDefined();
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await nftCalls()).toEqual([]);
  });

  it('with the addon missing, apply quietly spawns nft, says so with --verbose, and doctor warns', async () => {
    const missing = { NATCTL_NATIVE_ADDON: join(box.workDir, 'no-such-addon.node') };
    const applied = await natctl(['apply', '-f', fileB], missing);
    expect(applied.stderr).toBe('');
    expect(applied.exitCode).toBe(0);
    expect((await nftCalls()).some((call) => /^-j -f \S+ruleset\.json$/.test(call))).toBe(true);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toBe(`c2 ${addr.ext} 80`);
    const verbose = await natctl(['--verbose', 'status'], missing);
    expect(verbose.exitCode).toBe(0);
    expect(verbose.stderr).toContain(`natctl: nft transport: spawned nft via ip netns exec ${box.host} (the in-process addon is not loaded: not built (no ${missing.NATCTL_NATIVE_ADDON}))`);
    const doctor = await natctl(['doctor', '--json'], missing);
    const check = (JSON.parse(doctor.stdout) as { check: string; status: string; message: string; fix?: string }[]).find((c) => c.check === 'native binding');
    expect(check?.status).toBe('warn');
    expect(check?.message).toContain('not loaded');
    expect(check?.fix).toMatch(/libnftables-dev/);
  });

  it('NATCTL_NATIVE=0 spawns nft for every batch and listing, and doctor says it is disabled', async () => {
    await writeFile(callLog, '');
    const applied = await natctl(['apply', '-f', fileA], { NATCTL_NATIVE: '0' });
    expect(applied.exitCode).toBe(0);
    // The change (a delta or a full load) went to the kernel through the spawned binary.
    expect((await nftCalls()).some((call) => /(^| )-f /.test(call))).toBe(true);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8085)).toMatch(/^ERR/);
    const doctor = await natctl(['doctor', '--json'], { NATCTL_NATIVE: '0' });
    expect((JSON.parse(doctor.stdout) as { check: string; status: string; message: string }[]).find((c) => c.check === 'native binding')).toMatchObject({ status: 'info', message: expect.stringContaining('NATCTL_NATIVE=0') });
  });

  it.runIf(addonRuns)('NATCTL_NATIVE=0: an agent add spawns nft once, for the delta; marker and keys are looked up over netlink in process (NATCTL_NETLINK=0: through nft)', async () => {
    expect((await natctl(['apply', '-f', fileA], { NATCTL_NATIVE: '0' })).exitCode).toBe(0);
    const spawned = async (): Promise<string[]> => (await nftCalls()).filter((call) => call !== '--version');
    await writeFile(callLog, '');
    const added = await natctl(['add', '--name', 'api', '--publish', '8090:80', '--target', addr.c2, '--network', 'lab0', '--json'], { NATCTL_NATIVE: '0' });
    expect(added.exitCode, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ kind: 'delta', changed: true });
    expect(await spawned()).toEqual([expect.stringMatching(/^-j -f \S+ruleset\.json$/)]);
    const verbose = await natctl(['--verbose', 'status'], { NATCTL_NATIVE: '0' });
    expect(verbose.stderr).toContain(`nft transport: spawned nft via ip netns exec ${box.host} (the in-process addon is not loaded: disabled by NATCTL_NATIVE=0); netlink lookups in process (the addon enters netns ${box.host})`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8090)).toBe(`c2 ${addr.ext} 80`);
    // Without netlink the same delta is checked through nft: the markers are listed.
    await writeFile(callLog, '');
    const removed = await natctl(['rm', 'api', '--json'], { NATCTL_NATIVE: '0', NATCTL_NETLINK: '0' });
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ kind: 'delta' });
    const calls = await spawned();
    expect(calls.some((call) => /^-j list set inet natctl g-[0-9a-f]+$/.test(call))).toBe(true);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8090)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it.runIf(addonRuns)('doctor checks the addon in the namespace natctl acts in', async () => {
    const doctor = await natctl(['doctor', '--json']);
    expect((JSON.parse(doctor.stdout) as { check: string; status: string; message: string }[]).find((c) => c.check === 'native binding')).toMatchObject({ status: 'pass', message: expect.stringContaining(`in netns ${box.host}`) });
  });

  it.runIf(addonRuns)('with the addon, a batch over 1 MB and its terse read-back run in an nft forked inside the namespace, without ip netns exec', async () => {
    // The wrapper records its network and mount namespaces: `ip netns exec` always runs its
    // command in a mount namespace of its own, a fork from natctl keeps natctl's.
    const bigDir = join(box.workDir, 'bin-big');
    const bigLog = join(box.workDir, 'nft-big.log');
    await mkdir(bigDir);
    const realNft = (await box.exec(box.host, 'sh', ['-c', 'command -v nft'])).stdout.trim();
    await writeFile(join(bigDir, 'nft'), `#!/bin/sh\necho "$(readlink /proc/self/ns/net) $(readlink /proc/self/ns/mnt) $*" >> "$NFT_BIG_LOG"\nexec ${realNft} "$@"\n`);
    await chmod(join(bigDir, 'nft'), 0o755);
    const bulk = Array.from({ length: 16_000 }, (_, i) => ({ name: `bulk${i}`, hostPort: 20_000 + i, target: `${addr.c2}:80` }));
    const file = await box.writeConfig('big.json', { ...configA, mappings: [...configA.mappings, ...bulk] });
    // A state dir of its own: a full load whatever the tests before applied (else a delta).
    const applied = await box.natctl(['--state-dir', join(box.workDir, 'big-state'), 'apply', '-f', file], { PATH: `${bigDir}:${process.env.PATH ?? ''}`, NFT_BIG_LOG: bigLog });
    expect(applied.exitCode).toBe(0);
    const calls = (await readFile(bigLog, 'utf8')).split('\n').filter(Boolean);
    const hostNet = (await box.exec(box.host, 'readlink', ['/proc/self/ns/net'])).stdout.trim();
    const ownMnt = (await readlink('/proc/self/ns/mnt')).trim();
    expect(calls.filter((c) => / -j -f \S+$/.test(c))).toHaveLength(1);
    expect(calls.filter((c) => / -t -j list table inet natctl$/.test(c))).toHaveLength(1);
    for (const call of calls) expect(call.startsWith(`${hostNet} ${ownMnt} `)).toBe(true);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 20_005)).toBe(`c2 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });
});
