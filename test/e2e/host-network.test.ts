// The host-network layer: rtnetlink (through the `netlink` addon, in a worker inside the
// namespace) and the iproute2 fallback must see the same links, addresses and hairpin state,
// and both must be able to turn hairpin mode on.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { ipHost, openHostNetwork } from '../../src/host/network.js';
import { e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

describe.runIf(enabled)('host network inspection', () => {
  const netns = `nc-host-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const ip = (args: string[]) => execa('ip', ['-n', netns, ...args]);

  beforeAll(async () => {
    await execa('ip', ['netns', 'add', netns]);
    await ip(['link', 'add', 'br0', 'type', 'bridge']);
    await ip(['link', 'add', 'p1', 'type', 'veth', 'peer', 'name', 'p1peer']);
    await ip(['link', 'add', 'p2', 'type', 'veth', 'peer', 'name', 'p2peer']);
    await ip(['link', 'set', 'p1', 'master', 'br0']);
    await ip(['link', 'set', 'p2', 'master', 'br0']);
    await ip(['link', 'set', 'br0', 'up']);
    await ip(['addr', 'add', '198.18.7.1/24', 'dev', 'br0']);
    await ip(['addr', 'add', 'fd00:7::1/64', 'dev', 'br0', 'nodad']);
  });
  afterAll(() => execa('ip', ['netns', 'del', netns], { reject: false }));

  const hairpinOf = async (port: string): Promise<boolean> => String((await ip(['-d', 'link', 'show', port])).stdout).includes('hairpin on');

  it('netlink and iproute2 agree on links, masters, addresses and hairpin', async () => {
    const runner = createRunner(netns);
    const viaNetlink = await openHostNetwork(runner);
    expect(viaNetlink.via).toBe('netlink-worker');
    const viaIp = ipHost(runner);
    const key = (l: { name: string; master?: string; up: boolean; hairpin?: boolean }) => `${l.name} ${l.master ?? '-'} ${l.up} ${l.hairpin ?? '-'}`;
    expect((await viaNetlink.links()).map(key).sort()).toEqual((await viaIp.links()).map(key).sort());
    const addrKey = (a: { link: string; address: string; prefix: number }) => `${a.link} ${a.address}/${a.prefix}`;
    const netlinkAddrs = (await viaNetlink.addresses()).map(addrKey).filter((a) => !a.includes('fe80')).sort();
    expect(netlinkAddrs).toEqual((await viaIp.addresses()).map(addrKey).filter((a) => !a.includes('fe80')).sort());
    expect(netlinkAddrs).toContain('br0 198.18.7.1/24');
    expect(netlinkAddrs).toContain('br0 fd00:7::1/64');
  });

  it('both set hairpin mode on a bridge port', async () => {
    const runner = createRunner(netns);
    expect(await hairpinOf('p1')).toBe(false);
    const port = (name: string) => ipHost(runner).links().then((links) => links.find((l) => l.name === name)!);
    await (await openHostNetwork(runner)).setHairpin(await port('p1'));
    expect(await hairpinOf('p1')).toBe(true);
    expect(await hairpinOf('p2')).toBe(false);
    await ipHost(runner).setHairpin(await port('p2'));
    expect(await hairpinOf('p2')).toBe(true);
    expect((await ipHost(runner).links()).find((l) => l.name === 'p1')?.hairpin).toBe(true);
  });

  it('falls back to iproute2 when told not to use netlink', async () => {
    process.env.NATCTL_NETLINK = '0';
    try {
      expect((await openHostNetwork(createRunner(netns))).via).toBe('ip');
    } finally {
      delete process.env.NATCTL_NETLINK;
    }
  });
});
