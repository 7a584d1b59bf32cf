// Which conntrack entries natctl clears after an apply: flows of UDP/SCTP mappings that
// changed or went away (by host port and old target), and flows to the host port of UDP/SCTP
// mappings that were added (by host port and local destination); never TCP or unchanged mappings.
import { describe, expect, it } from 'vitest';
import { parseConfigObject } from '../../src/config/load.js';
import { conntrackArgs, staleFlowFilters } from '../../src/host/conntrack.js';
import { buildModel } from '../../src/model/build.js';

const model = (mappings: unknown[]) => buildModel(parseConfigObject({ version: 1, mappings }));

describe('stale flow filters', () => {
  const before = model([
    { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.2' },
    { name: 'keep', proto: 'udp', hostPort: 54, target: '198.18.0.2' },
    { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.2' },
    { name: 'game', proto: 'udp', hostIp: 'fd00::1', hostPort: '7000-7001', targets: ['[fd00::2]:8000-8001', '[fd00::3]:8000-8001'] },
  ]);

  it('selects changed and removed UDP mappings only, port by port and target by target', () => {
    const after = model([
      { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.3' },
      { name: 'keep', proto: 'udp', hostPort: 54, target: '198.18.0.2' },
      { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.9' },
    ]);
    const { filters } = staleFlowFilters(before, after, local);
    expect(filters.map((f) => `${f.proto} ${f.hostIp ?? '*'} ${f.port} ${f.replySource ?? '-'}`)).toEqual([
      'udp * 53 198.18.0.2',
      'udp fd00::1 7000 fd00::2', 'udp fd00::1 7000 fd00::3',
      'udp fd00::1 7001 fd00::2', 'udp fd00::1 7001 fd00::3',
      // dns changed: its host port now leads to the new target, from every local address.
      'udp 198.19.0.1 53 -', 'udp 198.18.0.1 53 -',
    ]);
  });

  const local = [
    { family: 4 as const, address: '127.0.0.1' }, { family: 4 as const, address: '198.19.0.1' }, { family: 4 as const, address: '198.18.0.1' },
    { family: 6 as const, address: '::1' }, { family: 6 as const, address: 'fd00:19::1' },
  ];

  it('clears nothing when nothing changed', () => {
    expect(staleFlowFilters(before, before, local).filters).toEqual([]);
  });

  it('clears flows to the host port of added UDP mappings: on every non-loopback local address of the family, or on the host IP', () => {
    const added = model([
      { name: 'dns', proto: 'udp', hostPort: 53, target: '198.18.0.2' },
      { name: 'web', proto: 'tcp', hostPort: 80, target: '198.18.0.2' },
      { name: 'game', proto: 'udp', hostIp: 'fd00::1', hostPort: '7000-7001', target: '[fd00::2]:8000-8001' },
    ]);
    const { filters } = staleFlowFilters(undefined, added, local);
    expect(filters.map((f) => `${f.proto} ${f.hostIp ?? '*'} ${f.port} ${f.replySource ?? '-'}`)).toEqual([
      'udp 198.19.0.1 53 -', 'udp 198.18.0.1 53 -',
      'udp fd00::1 7000 -', 'udp fd00::1 7001 -',
    ]);
    expect(conntrackArgs(filters[0]!)).toEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-port-dst', '53', '--orig-dst', '198.19.0.1']);
  });

  it('builds a narrow conntrack command', () => {
    const { filters } = staleFlowFilters(before, model([]));
    expect(conntrackArgs(filters[0]!)).toEqual(['-D', '-f', 'ipv4', '-p', 'udp', '--orig-port-dst', '53', '--reply-src', '198.18.0.2']);
    expect(conntrackArgs(filters.find((f) => f.hostIp)!)).toEqual(['-D', '-f', 'ipv6', '-p', 'udp', '--orig-port-dst', '7000', '--reply-src', 'fd00::2', '--orig-dst', 'fd00::1']);
  });

  it('does not walk huge ranges one port at a time', () => {
    const wide = model([{ name: 'wide', proto: 'udp', hostPort: '10000-20000', target: '198.18.0.2' }]);
    expect(staleFlowFilters(wide, model([]))).toEqual({ filters: [], skipped: ['wide'] });
    expect(staleFlowFilters(undefined, wide, local)).toEqual({ filters: [], skipped: ['wide'] });
  });
});
