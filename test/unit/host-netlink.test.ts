// The host layer's in-process pieces (docs/operations.md, "Host settings"): the sock_diag
// request and answer (what `ss -l -t -u` reads), the local routes among an rtnetlink dump
// (what `ip route show table local type local` prints), the per-model host view kept up to
// date by an apply's changes, and the local checks and conntrack work built on them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Runner } from '../../src/backends/exec.js';
import { parseConfigObject } from '../../src/config/load.js';
import { clearStaleFlows, mappingChanges } from '../../src/host/conntrack.js';
import { localFindings } from '../../src/host/local-checks.js';
import type { Listener } from '../../src/host/listeners.js';
import { type RouteMessage, localRouteCidrs } from '../../src/host/netlink.js';
import type { FlowTable, HostNetwork } from '../../src/host/network.js';
import { inetDiagRequest, listeningStates, parseInetDiag } from '../../src/host/sock-diag.js';
import { type Flow, CT_DELETE, ctDeleteRequest, parseCtMessage } from '../../src/host/flows.js';
import { type HostView, hostView } from '../../src/host/view.js';
import { buildModel } from '../../src/model/build.js';

/** An inet_diag_msg as the kernel sends it (linux/inet_diag.h). */
function diagMessage(family: 4 | 6, port: number, src: number[]): Buffer {
  const message = Buffer.alloc(72);
  message.writeUInt8(family === 4 ? 2 : 10, 0);
  message.writeUInt8(10, 1); // TCP_LISTEN
  message.writeUInt16BE(port, 4);
  message.writeUInt16BE(0, 6);
  Buffer.from(src).copy(message, 8);
  return message;
}

describe('sock_diag', () => {
  it('asks for one family and protocol in the states ss -l shows (UDP: LISTEN and CLOSE; TCP: LISTEN)', () => {
    const request = inetDiagRequest(6, 'udp');
    expect(request.length).toBe(56);
    expect([request[0], request[1]]).toEqual([10, 17]);
    expect(request.readUInt32LE(4)).toBe((1 << 10) | (1 << 7));
    expect(listeningStates).toBe(0x480);
    expect(request.subarray(8).every((b) => b === 0)).toBe(true);
    const tcp4 = inetDiagRequest(4, 'tcp');
    expect([tcp4[0], tcp4[1]]).toEqual([2, 6]);
    // TCP: LISTEN only (the kernel then skips its walk of the established hash).
    expect(tcp4.readUInt32LE(4)).toBe(1 << 10);
  });

  it('reads the local address and port of each socket; an all-zero address is a wildcard', () => {
    expect(parseInetDiag(diagMessage(4, 8080, [127, 0, 0, 1]), 'tcp')).toEqual({ proto: 'tcp', addr: '127.0.0.1', port: 8080 });
    expect(parseInetDiag(diagMessage(4, 53, [0, 0, 0, 0]), 'udp')).toEqual({ proto: 'udp', port: 53 });
    expect(parseInetDiag(diagMessage(6, 443, [0xfd, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 'tcp')).toEqual({ proto: 'tcp', addr: 'fd00:18::1', port: 443 });
    expect(parseInetDiag(diagMessage(6, 22, new Array(16).fill(0)), 'tcp')).toEqual({ proto: 'tcp', port: 22 });
    expect(parseInetDiag(Buffer.alloc(40), 'tcp')).toBeUndefined();
    expect(parseInetDiag(diagMessage(4, 0, [127, 0, 0, 1]), 'udp')).toBeUndefined();
  });
});

describe('local routes from an rtnetlink dump', () => {
  const route = (family: number, table: number, type: string, dst: number[], dstLen: number): RouteMessage => ({ data: { family, dstLen, table: table > 255 ? 252 : table, type }, attrs: { dst: Buffer.from(dst), table } });
  it('keeps table local, type local; not broadcast, not the main table', () => {
    const cidrs = localRouteCidrs([
      route(2, 254, 'UNICAST', [198, 18, 7, 0], 24),
      route(2, 255, 'LOCAL', [127, 0, 0, 0], 8),
      route(2, 255, 'BROADCAST', [198, 18, 7, 255], 32),
      route(2, 255, 'LOCAL', [198, 18, 7, 1], 32),
      route(10, 255, 'LOCAL', [0xfd, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128),
      route(2, 1000, 'LOCAL', [198, 18, 9, 1], 32),
    ]);
    expect(cidrs).toEqual([
      { family: 4, addr: '127.0.0.0', prefix: 8 },
      { family: 4, addr: '198.18.7.1', prefix: 32 },
      { family: 6, addr: 'fd00:7::1', prefix: 128 },
    ]);
  });
});

// A pool of mapping variants: ports unique per slot, so any subset is a valid config.
const variant = (slot: number, v: number): Record<string, unknown> => {
  const proto = (['tcp', 'udp', 'sctp'] as const)[v % 3];
  const hostIp = [undefined, '127.0.0.1', '198.18.0.1', '0.0.0.0'][Math.floor(v / 3) % 4];
  const ranged = v % 5 === 0;
  const port = 2000 + slot * 10;
  // A loopback host IP needs its target in a declared network (route_localnet goes there).
  const target = (v % 2 || hostIp === '127.0.0.1' ? '198.18.1.' : '198.19.0.') + String(2 + slot);
  return { name: `m${slot}`, proto, ...(hostIp ? { hostIp } : {}), hostPort: ranged ? `${port}-${port + 3}` : port, target: ranged ? `${target}:${port}-${port + 3}` : `${target}:80` };
};
const config = (slots: Map<number, number>) => buildModel(parseConfigObject({ version: 1, networks: [{ name: 'br0', subnets: ['198.18.1.0/24'] }], mappings: [...slots].map(([slot, v]) => variant(slot, v)) }));

const viewShape = (view: HostView) => ({
  size: view.size,
  protos: [...view.protos].sort(),
  bound: [...view.bound.keys()].sort(),
  loopback: [...view.loopback].sort(),
  unnetworked: [...view.unnetworked.keys()].sort(),
  ranged: [...view.ranged.keys()].sort(),
  ports: (['tcp', 'udp', 'sctp'] as const).map((p) => {
    const counts = view.singlePorts.get(p);
    const used: string[] = [];
    if (counts) for (let port = 0; port < counts.length; port++) if (counts[port]) used.push(`${port}x${counts[port]}`);
    return used;
  }),
});

describe('host view', () => {
  it('updated by the changes, equals the view built from scratch, for any before and after', () => {
    const slots = fc.dictionary(fc.integer({ min: 0, max: 11 }).map(String), fc.integer({ min: 0, max: 59 }), { maxKeys: 12 }).map((d) => new Map(Object.entries(d).map(([k, v]) => [Number(k), v])));
    fc.assert(fc.property(slots, slots, (a, b) => {
      const before = config(a);
      const after = config(b);
      hostView(before);
      const updated = hostView(after, { before, changes: mappingChanges(before, after) });
      const fresh = hostView(config(b));
      expect(viewShape(updated)).toEqual(viewShape(fresh));
    }), { numRuns: 200 });
  });

  it('is built once per model and handed on, not rebuilt, by an apply that knows its changes', () => {
    const before = config(new Map([[0, 1], [1, 4]]));
    const after = config(new Map([[0, 1], [1, 4], [2, 7]]));
    const view = hostView(before);
    expect(hostView(before)).toBe(view);
    expect(hostView(after, { before, changes: { added: [after.mappings[2]!], removed: [] } })).toBe(view);
    expect(view.size).toBe(3);
  });
});

function recordingRunner(): Runner & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async run(command, args) {
      calls.push([command, ...args].join(' '));
      if (command === 'ss') return { exitCode: 0, stdout: 'tcp LISTEN 0 128 0.0.0.0:2010 0.0.0.0:* users:(("redis-server",pid=9,fd=6))\n', stderr: '' };
      return { exitCode: 0, stdout: '', stderr: '' };
    },
  };
}

function fakeHost(listeners: Listener[]): HostNetwork & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    via: 'netlink',
    links: async () => [],
    addresses: async () => (asked.push('addresses'), [{ link: 'eth0', family: 4, address: '198.18.0.1', prefix: 24 }]),
    setHairpin: async () => undefined,
    localRoutes: async () => (asked.push('routes'), [{ family: 4, addr: '198.18.0.1', prefix: 32 }, { family: 4, addr: '127.0.0.0', prefix: 8 }]),
    listeners: async (protos) => (asked.push(`listeners ${protos.join(',')}`), listeners),
    close: () => undefined,
  };
}

describe('local checks through the host network', () => {
  it('needs no command when no listener sits on a published port and every host IP is local', async () => {
    const runner = recordingRunner();
    const host = fakeHost([{ proto: 'tcp', port: 22 }, { proto: 'udp', addr: '127.0.0.53', port: 53 }]);
    const model = config(new Map([[0, 3], [1, 6], [2, 4]]));
    expect(await localFindings(runner, model, host)).toEqual([]);
    expect(runner.calls).toEqual([]);
    expect(host.asked.sort()).toEqual(['listeners tcp,udp', 'routes']);
  });

  it('runs ss -p only once a listener sits on a published port, and names the process', async () => {
    const runner = recordingRunner();
    const model = config(new Map([[1, 0]])); // m1: tcp 2010, no host IP
    const findings = await localFindings(runner, model, fakeHost([{ proto: 'tcp', port: 2010 }]));
    expect(runner.calls).toEqual(['ss -H -l -n -p -t -u']);
    expect(findings.map((f) => f.check)).toEqual(['port in use']);
    expect(findings[0]?.message).toContain('redis-server (pid 9)');
  });

  it('warns about a host IP that is not local', async () => {
    const model = buildModel(parseConfigObject({ version: 1, mappings: [{ name: 'far', hostIp: '198.18.5.5', hostPort: 80, target: '198.19.0.2' }] }));
    const findings = await localFindings(recordingRunner(), model, fakeHost([]));
    expect(findings.map((f) => `${f.check} ${f.mapping}`)).toEqual(['host ip far']);
  });
});

describe('conntrack work in proportion to the changes', () => {
  const model = config(new Map([[0, 1], [1, 2]]));
  it('lists nothing when nothing changed, or only TCP mappings did', async () => {
    const runner = recordingRunner();
    const host = fakeHost([]);
    expect(await clearStaleFlows(runner, model, model, { host })).toEqual([]);
    const tcp = config(new Map([[0, 1], [1, 2], [2, 0]]));
    expect(await clearStaleFlows(runner, model, tcp, { host, changes: { added: [tcp.mappings[2]!], removed: [] } })).toEqual([]);
    expect(runner.calls).toEqual([]);
    expect(host.asked).toEqual([]);
  });

  it('lists the flows of the family and protocol of a changed UDP mapping, from the changes given', async () => {
    const runner = recordingRunner();
    const host = fakeHost([]);
    const udp = config(new Map([[0, 1], [1, 2], [2, 1]]));
    await clearStaleFlows(runner, model, udp, { host, changes: { added: [udp.mappings[2]!], removed: [] } });
    expect(runner.calls).toEqual(['conntrack -L -f ipv4 -p udp']);
    expect(host.asked).toEqual(['addresses']);
  });
});

describe('ctnetlink messages', () => {
  const flow: Flow = { family: 4, proto: 'udp', src: '198.18.0.2', dst: '198.18.0.1', sport: 40000, dport: 53, replySrc: '198.18.1.2' };

  it('deletes one flow by its original tuple (nfgenmsg, then CTA_TUPLE_ORIG with its IP and protocol parts)', () => {
    expect(CT_DELETE).toBe(0x102);
    expect(ctDeleteRequest(flow).toString('hex')).toBe([
      '02000000', // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
      '34000180', // CTA_TUPLE_ORIG, nested, 52 bytes
      '14000180', '08000100c6120002', '08000200c6120001', // CTA_TUPLE_IP: V4_SRC, V4_DST
      '1c000280', '0500010011000000', '060002009c400000', '0600030000350000', // CTA_TUPLE_PROTO: NUM 17, SRC_PORT 40000, DST_PORT 53
    ].join(''));
  });

  it('reads a dumped flow back: original tuple and reply source, of the protocol asked for only', () => {
    for (const f of [flow, { ...flow, family: 6 as const, proto: 'sctp' as const, src: 'fd00::2', dst: 'fd00::1', replySrc: 'fd00:1::2' }]) {
      const orig = ctDeleteRequest(f);
      const reply = ctDeleteRequest({ ...f, src: f.replySrc, dst: f.src, sport: f.dport, dport: f.sport }).subarray(4);
      reply.writeUInt16LE(0x8002, 2); // CTA_TUPLE_REPLY
      const message = Buffer.concat([orig, reply]);
      expect(parseCtMessage(message, f.proto)).toEqual(f);
      expect(parseCtMessage(message, f.proto === 'udp' ? 'sctp' : 'udp')).toBeUndefined();
    }
    expect(parseCtMessage(Buffer.from([2, 0, 0, 0]), 'udp')).toBeUndefined();
  });

  it('clears matching flows through the kernel table without the conntrack command, and falls back to it when listing fails', async () => {
    const model = config(new Map([[0, 1]]));
    const udp = config(new Map([[0, 1], [3, 1]])); // m3: udp 2030, no host IP
    const changes = { added: [udp.mappings[1]!], removed: [] };
    const mine: Flow = { family: 4, proto: 'udp', src: '198.19.9.9', dst: '198.18.0.1', sport: 4000, dport: 2030, replySrc: '198.18.0.1' };
    const other: Flow = { ...mine, dport: 2031 };
    const removed: Flow[] = [];
    const table: FlowTable = { list: async () => [mine, other], remove: async (f) => void removed.push(f) };
    const runner = recordingRunner();
    expect(await clearStaleFlows(runner, model, udp, { changes, host: { ...fakeHost([]), conntrack: table } })).toEqual([]);
    expect(removed).toEqual([mine]);
    expect(runner.calls).toEqual([]);
    const broken: FlowTable = { list: async () => Promise.reject(new Error('Request rejected: EPROTONOSUPPORT')), remove: async () => undefined };
    await clearStaleFlows(runner, model, udp, { changes, host: { ...fakeHost([]), conntrack: broken } });
    expect(runner.calls).toEqual(['conntrack -L -f ipv4 -p udp']);
  });
});
