// `natctl status` at a size where the last generation keeps no listing (issue 8, docs/operations.md
// "status"): the counters and the drift it reports are the same whether it reads the table over
// nf_tables netlink (the default), through nft's listing in process (NATCTL_NETLINK=0) or through
// a spawned nft (NATCTL_NETLINK=0 NATCTL_NATIVE=0); a removed element, a rule added by hand and a
// chain added by hand are drift (exit 6) every way, and apply --verify-full repairs them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
/** Enough simple mappings that the generation keeps no listing (maxKeptListing, src/engine/state.ts). */
const fillers = 2000;
const config = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'admin', hostPort: 8443, target: `${addr.c2}:80`, allow: ['198.19.0.0/24'] },
    { name: 'shut', hostPort: 8081, target: `${addr.c1}:80` },
    ...Array.from({ length: fillers }, (_, i) => ({ name: `f${i}`, hostPort: 20000 + i, target: `${addr.c2}:80` })),
  ],
  block: [{ name: 'no-8081', proto: 'tcp', hostPort: 8081 }],
};

interface StatusJson {
  active: boolean;
  mappings: { name: string; connections: number; packets: number; bytes: number; state: string; description: string }[];
  blocked: { name: string; packets: number }[];
  drift: { drifted: boolean; missing: string[]; extra: string[] };
}

const ways: Record<string, Record<string, string>> = {
  netlink: {},
  'nft in process': { NATCTL_NETLINK: '0' },
  'spawned nft': { NATCTL_NETLINK: '0', NATCTL_NATIVE: '0' },
};

describe.runIf(enabled)('status of a large ruleset, read every way', () => {
  const box = new Sandbox('status');
  let file = '';

  const status = async (env: Record<string, string>): Promise<StatusJson & { exitCode: number }> => {
    const run = await box.natctl(['status', '--json'], env);
    expect(run.stdout, run.stderr).not.toBe('');
    return { ...(JSON.parse(run.stdout) as StatusJson), exitCode: run.exitCode };
  };
  const statuses = async (): Promise<Record<string, StatusJson & { exitCode: number }>> => {
    const out: Record<string, StatusJson & { exitCode: number }> = {};
    for (const [way, env] of Object.entries(ways)) out[way] = await status(env);
    return out;
  };

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    file = await box.writeConfig('large.json', config);
    const applied = await box.natctl(['apply', '-f', file]);
    expect(applied.exitCode, applied.stderr).toBe(0);
  }, 120_000);
  afterAll(() => box.destroy());

  it('shows the same counters and no drift every way, and the counters count what got through', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8443)).toBe(`c2 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 20007)).toBe(`c2 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081, { timeoutMs: 800 })).toMatch(/^ERR/);
    const all = await statuses();
    for (const [way, report] of Object.entries(all)) {
      expect(report.exitCode, way).toBe(0);
      expect(report.active, way).toBe(true);
      expect(report.drift, way).toEqual({ drifted: false, missing: [], extra: [] });
      expect(report.mappings, way).toHaveLength(fillers + 3);
      const of = (name: string) => report.mappings.find((m) => m.name === name)!;
      expect(of('web'), way).toMatchObject({ state: 'active', connections: 2, description: 'tcp 0.0.0.0:8080' });
      expect(of('web').packets, way).toBeGreaterThan(0);
      expect(of('admin'), way).toMatchObject({ state: 'active', connections: 1 });
      expect(of('admin').packets, way).toBeGreaterThan(0);
      expect(of('f7'), way).toMatchObject({ state: 'active', connections: 1 });
      expect(of('f8'), way).toMatchObject({ state: 'active', connections: 0, packets: 0 });
      expect(report.blocked.find((b) => b.name === 'no-8081')?.packets, way).toBeGreaterThan(0);
    }
    // The same numbers every way (the connection counts above, and every packet and byte count).
    expect(all['nft in process']!.mappings).toEqual(all.netlink!.mappings);
    expect(all['spawned nft']!.mappings).toEqual(all.netlink!.mappings);
    expect(all['nft in process']!.blocked).toEqual(all.netlink!.blocked);
    // The netlink way needs no nft at all: with an nft that always fails, status reads the same.
    const withoutNft = await status({ NATCTL_NFT: '/bin/false' });
    expect(withoutNft.exitCode).toBe(0);
    expect(withoutNft.mappings).toEqual(all.netlink!.mappings);
    expect((await status({ NATCTL_NFT: '/bin/false', NATCTL_NETLINK: '0' })).exitCode).not.toBe(0);
  }, 120_000);

  it('a removed element, a rule added by hand and a chain added by hand are drift every way; apply --verify-full repairs them', async () => {
    await box.nft(['delete', 'element', 'inet', 'natctl', 'dnat4', '{', 'tcp', '.', '20005', '}']);
    for (const [way, report] of Object.entries(await statuses())) {
      expect(report.exitCode, way).toBe(6);
      // Every simple mapping is one dnat4 element ('admin', with an allow-list, has chains instead).
      expect(report.drift.missing.join('\n'), way).toContain(`map dnat4 has ${fillers + 1} elements, expected ${fillers + 2}`);
      expect(report.drift.missing.join('\n'), way).toMatch(/map dnat4 element missing or different: .*"tcp",20005.*"f5"/);
      expect(report.mappings.find((m) => m.name === 'f5'), way).toMatchObject({ state: 'missing' });
    }
    expect((await box.natctl(['apply', '-f', file, '--verify-full'])).exitCode).toBe(0);
    await box.nft(['add', 'rule', 'inet', 'natctl', 'forward', 'tcp', 'dport', '9', 'drop']);
    await box.nft(['add', 'chain', 'inet', 'natctl', 'by-hand']);
    for (const [way, report] of Object.entries(await statuses())) {
      expect(report.exitCode, way).toBe(6);
      const problems = report.drift.missing.join('\n');
      expect(problems, way).toMatch(/chain forward/);
      expect(problems, way).toContain('chain by-hand is not declared');
    }
    const repaired = await box.natctl(['apply', '-f', file, '--verify-full', '--json']);
    expect(repaired.exitCode, repaired.stderr).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ changed: true, repairedDrift: true });
    for (const [way, report] of Object.entries(await statuses())) expect(report.exitCode, way).toBe(0);
  }, 120_000);
});
