// A UDP (or SCTP) client that keeps sending keeps its conntrack entry, and with it the
// destination chosen by its first packet. So natctl deletes such entries after an apply
// (as kube-proxy, Docker and the CNI hostport plugin do), matched narrowly:
//   - a mapping that moved or went away: the host port the client dialled and the old target
//     as the reply source, so the next datagram follows the new ruleset;
//   - a mapping that was added (or changed): flows whose original destination is the new host
//     port on a local address (the host IP, or every local address of the family for a
//     wildcard), so a client already talking to the host's own service on that port reaches
//     the workload from its next datagram on.
// No unrelated flow is touched (a flow to a remote server's port 53 has a remote original
// destination). TCP is left alone: its connections end by themselves and new ones follow the
// new ruleset.
import type { Runner } from '../backends/exec.js';
import { diffModels } from '../model/diff.js';
import { isLoopback } from '../config/addr.js';
import type { Mapping, Model } from '../model/model.js';
import { openHostNetwork } from './network.js';

/** More ports than this in one mapping are not walked one by one. */
const maxPortsPerMapping = 1024;

export interface StaleFlowFilter {
  family: 4 | 6;
  proto: 'udp' | 'sctp';
  port: number;
  /** The original destination address (--orig-dst). */
  hostIp?: string;
  /** The reply source, i.e. the DNAT target the flow went to (--reply-src). */
  replySource?: string;
}

export interface LocalAddress {
  family: 4 | 6;
  address: string;
}

const flowPorts = (mapping: Mapping): number[] => {
  const ports: number[] = [];
  for (let port = mapping.hostPorts.from; port <= mapping.hostPorts.to; port++) ports.push(port);
  return ports;
};

/**
 * The flows to clear between two models. `local`: the host's addresses, for mappings added
 * without a host IP (not needed, and may be empty, when no such mapping was added).
 */
export function staleFlowFilters(before: Model | undefined, after: Model, local: LocalAddress[] = []): { filters: StaleFlowFilter[]; skipped: string[] } {
  const filters: StaleFlowFilter[] = [];
  const skipped: string[] = [];
  const changes = diffModels(before, after).changes.filter((c) => c.kind === 'mapping');
  const datagram = (m: Mapping): m is Mapping & { proto: 'udp' | 'sctp' } => m.proto === 'udp' || m.proto === 'sctp';
  const tooWide = (m: Mapping): boolean => {
    if (m.hostPorts.to - m.hostPorts.from + 1 <= maxPortsPerMapping) return false;
    if (!skipped.includes(m.name)) skipped.push(m.name);
    return true;
  };
  // Mappings that changed or went away: exactly what a plan calls ~ and -.
  for (const mapping of changes.flatMap((c) => (c.op !== 'add' ? [c.before as Mapping] : []))) {
    if (!datagram(mapping) || tooWide(mapping)) continue;
    for (const port of flowPorts(mapping)) {
      for (const target of mapping.targets) {
        const filter: StaleFlowFilter = { family: mapping.family, proto: mapping.proto, port, replySource: target.addr };
        if (mapping.hostIp !== undefined) filter.hostIp = mapping.hostIp;
        filters.push(filter);
      }
    }
  }
  // Mappings that were added or changed (+ and ~): flows to the host port that the new DNAT
  // would now catch. A wildcard mapping never captures loopback (docs/ruleset.md).
  for (const mapping of changes.flatMap((c) => (c.op !== 'remove' ? [c.after as Mapping] : []))) {
    if (!datagram(mapping) || tooWide(mapping)) continue;
    const destinations = mapping.hostIp !== undefined
      ? [mapping.hostIp]
      : [...new Set(local.filter((a) => a.family === mapping.family && !isLoopback(a.address)).map((a) => a.address))];
    for (const port of flowPorts(mapping)) {
      for (const hostIp of destinations) filters.push({ family: mapping.family, proto: mapping.proto, port, hostIp });
    }
  }
  return { filters, skipped };
}

export function conntrackArgs(filter: StaleFlowFilter): string[] {
  const args = ['-D', '-f', filter.family === 4 ? 'ipv4' : 'ipv6', '-p', filter.proto, '--orig-port-dst', String(filter.port)];
  if (filter.replySource !== undefined) args.push('--reply-src', filter.replySource);
  if (filter.hostIp !== undefined) args.push('--orig-dst', filter.hostIp);
  return args;
}

/** The host's addresses, read only when an added datagram mapping has no host IP. */
async function localAddresses(runner: Runner, before: Model | undefined, after: Model): Promise<LocalAddress[]> {
  const needed = diffModels(before, after).changes.some((c) => c.kind === 'mapping' && c.op !== 'remove' && (c.after as Mapping).proto !== 'tcp' && (c.after as Mapping).hostIp === undefined);
  if (!needed) return [];
  const host = await openHostNetwork(runner);
  try {
    return (await host.addresses()).map((a) => ({ family: a.family, address: a.address }));
  } finally {
    host.close();
  }
}

/** Deletes flows that an apply redirects (see the top of this file); returns warnings, never throws. */
export async function clearStaleFlows(runner: Runner, before: Model | undefined, after: Model): Promise<string[]> {
  let local: LocalAddress[] = [];
  try {
    local = await localAddresses(runner, before, after);
  } catch (error) {
    return [`the host's addresses could not be read (${(error as Error).message}); existing UDP/SCTP flows to new mappings were not cleared`];
  }
  const { filters, skipped } = staleFlowFilters(before, after, local);
  const warnings = skipped.map((name) => `mapping ${name}: more than ${maxPortsPerMapping} ports; its existing UDP/SCTP flows were not cleared (they expire on their own)`);
  for (const filter of filters) {
    try {
      // Exit 1 with "0 flow entries have been deleted" is the common, fine case.
      const result = await runner.run('conntrack', conntrackArgs(filter));
      if (result.exitCode !== 0 && !/0 flow entries/.test(result.stderr)) {
        warnings.push(`clearing stale ${filter.proto} flows to port ${filter.port} failed: ${result.stderr.trim()}`);
        break;
      }
    } catch (error) {
      warnings.push(`stale ${filter.proto} flows of changed mappings were not cleared (${(error as Error).message}); install conntrack (apt-get install conntrack)`);
      break;
    }
  }
  return warnings;
}
