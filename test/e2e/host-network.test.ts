// The host-network layer: rtnetlink and sock_diag (through the `netlink` package, with sockets
// opened inside the namespace by natctl's addon, or in a worker inside it without the addon)
// and the iproute2/ss fallback must see the same links, addresses, hairpin state, local routes
// and listening sockets, and all must be able to turn hairpin mode on.
import { readlinkSync, statSync } from 'node:fs';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { loadNativeBinding } from '../../src/backends/native.js';
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
  // With the addon the sockets are opened in the namespace in process; NATCTL_NATIVE=0 (or no addon): the worker.
  const expectedVia = loadNativeBinding()?.withNetns ? 'netlink' : 'netlink-worker';

  const hairpinOf = async (port: string): Promise<boolean> => String((await ip(['-d', 'link', 'show', port])).stdout).includes('hairpin on');

  it('netlink and iproute2 agree on links, masters, addresses and hairpin', async () => {
    const runner = createRunner(netns);
    const viaNetlink = await openHostNetwork(runner);
    expect(viaNetlink.via).toBe(expectedVia);
    const viaIp = ipHost(runner);
    const key = (l: { name: string; master?: string; up: boolean; hairpin?: boolean }) => `${l.name} ${l.master ?? '-'} ${l.up} ${l.hairpin ?? '-'}`;
    expect((await viaNetlink.links()).map(key).sort()).toEqual((await viaIp.links()).map(key).sort());
    const addrKey = (a: { link: string; address: string; prefix: number }) => `${a.link} ${a.address}/${a.prefix}`;
    const netlinkAddrs = (await viaNetlink.addresses()).map(addrKey).filter((a) => !a.includes('fe80')).sort();
    expect(netlinkAddrs).toEqual((await viaIp.addresses()).map(addrKey).filter((a) => !a.includes('fe80')).sort());
    expect(netlinkAddrs).toContain('br0 198.18.7.1/24');
    expect(netlinkAddrs).toContain('br0 fd00:7::1/64');
    const routeKey = (c: { addr: string; prefix: number }) => `${c.addr}/${c.prefix}`;
    const routes = (await viaNetlink.localRoutes()).map(routeKey).sort();
    expect(routes).toEqual((await viaIp.localRoutes()).map(routeKey).sort());
    expect(routes).toContain('198.18.7.1/32');
    expect(routes).toContain('fd00:7::1/128');
    // Still the way it started: no call failed over to iproute2 behind the comparison's back.
    expect(viaNetlink.via).toBe(expectedVia);
    viaNetlink.close();
  });

  it('netlink (sock_diag) and ss agree on listening TCP and UDP sockets, both families', async () => {
    const runner = createRunner(netns);
    // Listeners held open inside the namespace for the length of the test.
    // "ready" once every socket is bound (listen and bind complete asynchronously).
    const script = [
      "const net = require('net'), dgram = require('dgram'); let left = 4;",
      "const done = () => { if (--left === 0) console.log('ready'); };",
      "net.createServer().listen(7001, '198.18.7.1', done);",
      "net.createServer().listen({ port: 7002, host: '::', ipv6Only: false }, done);",
      "dgram.createSocket('udp4').bind(7003, '0.0.0.0', done);",
      "dgram.createSocket({ type: 'udp6', ipv6Only: true }).bind(7004, 'fd00:7::1', done);",
      'setTimeout(() => process.exit(0), 60000);',
    ].join(' ');
    const server = execa('ip', ['netns', 'exec', netns, process.execPath, '-e', script]);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout?.on('data', (chunk: Buffer) => String(chunk).includes('ready') && resolve());
        server.catch(reject);
      });
      const viaNetlink = await openHostNetwork(runner);
      const key = (l: { proto: string; addr?: string; port: number }) => `${l.proto} ${l.addr ?? '*'} ${l.port}`;
      const found = (await viaNetlink.listeners(['tcp', 'udp'])).map(key).sort();
      expect(viaNetlink.via).toBe(expectedVia);
      viaNetlink.close();
      expect(found).toEqual((await ipHost(runner).listeners(['tcp', 'udp'])).map(key).sort());
      expect(found).toEqual(['tcp * 7002', 'tcp 198.18.7.1 7001', 'udp * 7003', 'udp fd00:7::1 7004']);
    } finally {
      server.kill('SIGTERM');
      await server.catch(() => undefined);
    }
  });

  it('both set hairpin mode on a bridge port', async () => {
    const runner = createRunner(netns);
    expect(await hairpinOf('p1')).toBe(false);
    const port = (name: string) => ipHost(runner).links().then((links) => links.find((l) => l.name === name)!);
    const host = await openHostNetwork(runner);
    await host.setHairpin(await port('p1'));
    host.close();
    expect(await hairpinOf('p1')).toBe(true);
    expect(await hairpinOf('p2')).toBe(false);
    await ipHost(runner).setHairpin(await port('p2'));
    expect(await hairpinOf('p2')).toBe(true);
    expect((await ipHost(runner).links()).find((l) => l.name === 'p1')?.hairpin).toBe(true);
  });

  // The addon's setns on the calling thread (native/src/natctl_nft.cc, withNetns): inside the
  // namespace for the callback, back where it was afterwards, whether the callback returned or threw.
  it.runIf(loadNativeBinding()?.withNetns !== undefined)('withNetns enters the namespace for the callback only', () => {
    const binding = loadNativeBinding()!;
    const own = readlinkSync('/proc/thread-self/ns/net');
    const inside = binding.withNetns!(netns, () => readlinkSync('/proc/thread-self/ns/net'));
    expect(inside).toBe(`net:[${statSync(`/run/netns/${netns}`).ino}]`);
    expect(inside).not.toBe(own);
    expect(readlinkSync('/proc/thread-self/ns/net')).toBe(own);
    expect(() => binding.withNetns!(netns, () => {
      throw new Error('boom');
    })).toThrow('boom');
    expect(readlinkSync('/proc/thread-self/ns/net')).toBe(own);
    expect(() => binding.withNetns!('nc-no-such-netns', () => 1)).toThrow(/cannot open \/run\/netns\/nc-no-such-netns/);
    expect(() => binding.withNetns!('../x', () => 1)).toThrow(/not a network namespace name/);
    expect(readlinkSync('/proc/thread-self/ns/net')).toBe(own);
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
