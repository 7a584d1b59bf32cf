// Which conntrack entries natctl clears after an apply: flows of UDP/SCTP mappings that
// changed or went away (by host port and old target), and flows to the host port of UDP/SCTP
// mappings that were added (by host port and local destination); never TCP or unchanged mappings.
import { describe, expect, it } from 'vitest';
import { parseConfigObject } from '../../src/config/load.js';
import { type Flow, deleteArgs, flowMatches, parseFlows, staleFlowFilters } from '../../src/host/conntrack.js';
import { buildModel } from '../../src/model/build.js';

const model = (mappings: unknown[]) => buildModel(parseConfigObject({ version: 1, mappings }));
const show = (f: { proto: string; hostIps?: string[]; ports: { from: number; to: number }; replySource?: string }) =>
  `${f.proto} ${f.hostIps?.join(',') ?? '*'} ${f.ports.from}-${f.ports.to} ${f.replySource ?? '-'}`;

describe('stale flow filters', () => {
  const before = model([
    { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.2' },
    { name: 'keep', proto: 'udp', hostPort: 54, target: '198.18.0.2' },
    { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.2' },
    { name: 'game', proto: 'udp', hostIp: 'fd00::1', hostPort: '7000-7001', targets: ['[fd00::2]:8000-8001', '[fd00::3]:8000-8001'] },
  ]);
  const local = [
    { family: 4 as const, address: '127.0.0.1' }, { family: 4 as const, address: '198.19.0.1' }, { family: 4 as const, address: '198.18.0.1' },
    { family: 6 as const, address: '::1' }, { family: 6 as const, address: 'fd00:19::1' },
  ];

  it('selects changed and removed UDP mappings by host port and old target; a changed one also by its new host side', () => {
    const after = model([
      { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.3' },
      { name: 'keep', proto: 'udp', hostPort: 54, target: '198.18.0.2' },
      { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.9' },
    ]);
    expect(staleFlowFilters(before, after, local).map(show)).toEqual([
      'udp * 53-53 198.18.0.2',
      'udp fd00::1 7000-7001 fd00::2', 'udp fd00::1 7000-7001 fd00::3',
      // dns changed: its host port now leads to the new target, from every non-loopback local address.
      'udp 198.19.0.1,198.18.0.1 53-53 -',
    ]);
  });

  it('clears nothing when nothing changed', () => {
    expect(staleFlowFilters(before, before, local)).toEqual([]);
  });

  it('clears flows to the host port of added UDP mappings: on every non-loopback local address of the family, or on the host IP', () => {
    const added = model([
      { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.2' },
      { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.2' },
      { name: 'game', proto: 'sctp', hostIp: 'fd00::1', hostPort: '7000-7001', target: '[fd00::2]:8000-8001' },
    ]);
    expect(staleFlowFilters(undefined, added, local).map(show)).toEqual(['udp 198.19.0.1,198.18.0.1 53-53 -', 'sctp fd00::1 7000-7001 -']);
  });

  it('matches flows from a conntrack listing narrowly and deletes each by its exact tuple', () => {
    const listing = [
      'udp      17 28 src=198.19.0.2 dst=198.19.0.1 sport=41000 dport=53 [UNREPLIED] src=198.19.0.1 dst=198.19.0.2 sport=53 dport=41000 mark=0 use=1',
      'udp      17 28 src=198.18.0.2 dst=8.8.8.8 sport=41001 dport=53 src=8.8.8.8 dst=198.19.0.1 sport=53 dport=41001 [ASSURED] mark=0 use=1',
      'udp      17 28 src=198.19.0.2 dst=198.19.0.1 sport=41002 dport=5353 src=198.18.0.2 dst=198.19.0.2 sport=53 dport=41002 mark=0 use=1',
    ].join('\n');
    const flows = parseFlows(listing, 4, 'udp');
    expect(flows).toHaveLength(3);
    const added = staleFlowFilters(undefined, model([{ name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.3' }]), local);
    expect(flows.filter((f) => added.some((filter) => flowMatches(f, filter))).map((f) => f.sport)).toEqual([41000]);
    const moved = staleFlowFilters(model([{ name: 'mdns', proto: 'udp', hostPort: '5350-5360', target: '198.18.0.2:43-53' }]), model([]), local);
    expect(flows.filter((f) => moved.some((filter) => flowMatches(f, filter))).map((f) => f.sport)).toEqual([41002]);
    expect(deleteArgs(flows[0] as Flow)).toEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-src', '198.19.0.2', '--orig-dst', '198.19.0.1', '--orig-port-src', '41000', '--orig-port-dst', '53']);
  });

  it('reads IPv6 flows with addresses in canonical form', () => {
    const [flow] = parseFlows('udp      17 29 src=fd00:19:0:0::2 dst=fd00:19::1 sport=40000 dport=5300 [UNREPLIED] src=fd00:19::1 dst=fd00:19::2 sport=5300 dport=40000 mark=0 use=1', 6, 'udp');
    expect(flow).toMatchObject({ src: 'fd00:19::2', dst: 'fd00:19::1', dport: 5300, replySrc: 'fd00:19::1' });
  });
});
