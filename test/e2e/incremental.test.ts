// Incremental applies on a real kernel (issue 8, docs/operations.md "How an apply reaches the
// kernel"): a changed config goes as a delta and packets reach the new mapping while an
// untouched mapping keeps its counters; an unchanged one is a no-op; a refused delta falls back
// to a full load, and a kernel that refuses everything keeps the previous ruleset; a clobbered
// table is repaired by the full path; `natctl add` and `natctl rm` work by packets.
import { execa } from 'execa';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const fakeNft = join(repoRoot, 'test/helpers/fake-nft.sh');
const network = { name: 'lab0', subnets: ['198.18.0.0/24'] };
const configA = { version: 1, networks: [network], mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }] };
const configB = { version: 1, networks: [network], mappings: [...configA.mappings, { name: 'db', hostPort: 8081, target: `${addr.c2}:80` }] };
const configC = { version: 1, networks: [network], mappings: [...configB.mappings, { name: 'cache', hostPort: 8083, target: `${addr.c2}:80` }] };
// A mapping with chains (two targets): removing it deletes chains a map element jumped to.
const configD = { version: 1, networks: [network], mappings: [...configB.mappings, { name: 'pair', hostPort: 8084, targets: [`${addr.c1}:80`, `${addr.c2}:80`] }] };

interface ApplyJson { kind: string; changed: boolean; repairedDrift: boolean; generation: number }
interface StatusJson { mappings: { name: string; connections: number; packets: number; state: string }[]; drift: { drifted: boolean } }

describe.runIf(enabled)('incremental applies on a real kernel', () => {
  const box = new Sandbox('incr');
  let fileA = '';
  let fileB = '';
  let fileC = '';
  let fileD = '';
  let realNft = '';

  /** natctl's table as the kernel holds it, without counters. */
  const live = async (): Promise<string> => {
    const result = await box.exec(box.host, 'nft', ['list', 'table', 'inet', 'natctl']);
    return result.exitCode === 0 ? result.stdout.replace(/packets \d+ bytes \d+/g, 'packets c') : '<none>';
  };
  const apply = async (file: string, env: Record<string, string> = {}): Promise<ApplyJson & { exitCode: number; stderr: string }> => {
    const run = await box.natctl(['apply', '-f', file, '--json'], env);
    return { ...(JSON.parse(run.stdout) as ApplyJson), exitCode: run.exitCode, stderr: run.stderr };
  };
  const status = async (): Promise<StatusJson & { exitCode: number }> => {
    const run = await box.natctl(['status', '--json']);
    return { ...(JSON.parse(run.stdout) as StatusJson), exitCode: run.exitCode };
  };
  const web = async (): Promise<{ connections: number; packets: number }> => (await status()).mappings.find((m) => m.name === 'web')!;
  const faulty = (extra: Record<string, string>): Record<string, string> => ({ NATCTL_NFT: fakeNft, REAL_NFT: realNft, FAKE_NFT_STATE: box.workDir, NATCTL_NATIVE: '0', ...extra });

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    realNft = String((await execa('sh', ['-c', 'command -v nft'])).stdout).trim();
    fileA = await box.writeConfig('a.json', configA);
    fileB = await box.writeConfig('b.json', configB);
    fileC = await box.writeConfig('c.json', configC);
    fileD = await box.writeConfig('d.json', configD);
  }, 60_000);
  afterAll(() => box.destroy());

  it('the first apply is full; adding a mapping is a delta, packets reach it, and the untouched mapping keeps its counters', async () => {
    expect(await apply(fileA)).toMatchObject({ exitCode: 0, kind: 'full', changed: true });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    const before = await web();
    expect(before.connections).toBeGreaterThanOrEqual(2);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toMatch(/^ERR/);

    expect(await apply(fileB)).toMatchObject({ exitCode: 0, kind: 'delta', changed: true, repairedDrift: false });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe(`c2 ${addr.ext} 80`);
    const after = await status();
    expect(after.exitCode).toBe(0);
    expect(after.drift.drifted).toBe(false);
    expect(after.mappings.find((m) => m.name === 'web')).toMatchObject({ connections: before.connections, packets: before.packets });
    expect(after.mappings.find((m) => m.name === 'db')).toMatchObject({ state: 'active', connections: 1 });
  }, 60_000);

  it('an unchanged config is a no-op that leaves the kernel as it is', async () => {
    const before = await live();
    expect(await apply(fileB)).toMatchObject({ exitCode: 0, kind: 'noop', changed: false });
    expect(await live()).toBe(before);
  }, 60_000);

  it('a kernel that refuses every load keeps the previous ruleset (exit 1); the next apply is a delta again', async () => {
    const before = await live();
    const refused = await apply(fileC, faulty({ FAKE_NFT_MODE: 'refuse' }));
    expect(refused.exitCode).toBe(1);
    expect(await live()).toBe(before);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8083)).toMatch(/^ERR/);
    expect((await status()).exitCode).toBe(0);
    expect(await apply(fileC)).toMatchObject({ exitCode: 0, kind: 'delta' });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8083)).toBe(`c2 ${addr.ext} 80`);
  }, 60_000);

  it('a refused delta falls back to a full load that applies the change', async () => {
    // The delta batch is the only one that deletes elements (removing "cache"); a full load declares them.
    const result = await apply(fileB, faulty({ FAKE_NFT_REFUSE: 'delete element' }));
    expect(result).toMatchObject({ exitCode: 0, kind: 'full', changed: true });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8083)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe(`c2 ${addr.ext} 80`);
    expect((await status()).drift.drifted).toBe(false);
  }, 60_000);

  it('a clobbered table is drift: the next apply takes the full path and repairs it', async () => {
    await box.nft(['delete', 'table', 'inet', 'natctl']);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toMatch(/^ERR/);
    expect(await apply(fileB)).toMatchObject({ exitCode: 0, kind: 'full', repairedDrift: true });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  }, 60_000);

  it('a kernel before 6.2 (chain delete busy right after its element went) gets the chains deleted after a retry; never busy-free, the delta is undone', async () => {
    const busyCount = join(box.workDir, 'busy-count');
    expect((await apply(fileB)).exitCode).toBe(0);
    expect(await apply(fileD)).toMatchObject({ exitCode: 0, kind: 'delta' });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8084)).toMatch(/^c[12] /);
    // Busy twice, as 6.1 answers while the element's reference is still being released.
    await rm(busyCount, { force: true });
    const removed = await apply(fileB, faulty({ FAKE_NFT_MODE: 'busy-chain-delete', FAKE_NFT_BUSY: '2' }));
    expect(removed, removed.stderr).toMatchObject({ exitCode: 0, kind: 'delta' });
    expect((await readFile(busyCount, 'utf8')).trim()).toBe('2');
    expect(await live()).not.toMatch(/chain [mft]-pair/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8084)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    // Busy for good: the chains stay, so the delta is undone and the previous ruleset is in place.
    expect(await apply(fileD)).toMatchObject({ exitCode: 0, kind: 'delta' });
    const before = await live();
    await rm(busyCount, { force: true });
    const stuck = await apply(fileB, faulty({ FAKE_NFT_MODE: 'busy-chain-delete', FAKE_NFT_BUSY: '99' }));
    expect(stuck.exitCode).toBe(1);
    expect(JSON.stringify(stuck)).toMatch(/chain [mft]-pair is still there/);
    expect(JSON.stringify(stuck)).toMatch(/previous ruleset was restored and verified/);
    expect(await live()).toBe(before);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8084)).toMatch(/^c[12] /);
    expect(await apply(fileB)).toMatchObject({ exitCode: 0, kind: 'delta' });
  }, 90_000);

  it('natctl add (a Docker -p string) and natctl rm work by packets, as deltas; bad input exits 2 untouched', async () => {
    const added = await box.natctl(['add', '--name', 'api', '--publish', '8082:80', '--target', addr.c2, '--network', 'lab0', '--json']);
    expect(added.exitCode, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ kind: 'delta', changed: true });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082)).toBe(`c2 ${addr.ext} 80`);

    const before = await live();
    const clash = await box.natctl(['add', '--name', 'other', '--host-port', '8082', '--target', addr.c1, '--json']);
    expect(clash.exitCode).toBe(2);
    expect(JSON.parse(clash.stdout).error.problems[0]).toMatchObject({ path: 'add[0]', message: expect.stringContaining('"api"') });
    const unknown = await box.natctl(['rm', 'nope', '--json']);
    expect(unknown.exitCode).toBe(2);
    expect(await live()).toBe(before);

    const removed = await box.natctl(['rm', 'api', '--json']);
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ kind: 'delta' });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082)).toMatch(/^ERR/);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await status()).drift.drifted).toBe(false);
  }, 60_000);

  it('natctl add on a clobbered table: the delta (sent without a marker check first) is refused, the full path repairs the table and adds the mapping', async () => {
    await box.nft(['delete', 'table', 'inet', 'natctl']);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toMatch(/^ERR/);
    const added = await box.natctl(['add', '--name', 'api', '--publish', '8082:80', '--target', addr.c2, '--network', 'lab0', '--json']);
    expect(added.exitCode, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ kind: 'full', changed: true, repairedDrift: true });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082)).toBe(`c2 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await status()).drift.drifted).toBe(false);
    // Back to deltas once the kernel holds the last generation again.
    const removed = await box.natctl(['rm', 'api', '--json']);
    expect(removed.exitCode, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ kind: 'delta' });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082)).toMatch(/^ERR/);
  }, 60_000);
});
