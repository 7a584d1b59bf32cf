// A UDP (or SCTP) client that keeps sending keeps its conntrack entry, and with it the
// destination chosen by its first packet. So natctl deletes such entries after an apply
// (as kube-proxy, Docker and the CNI hostport plugin do), matched narrowly:
//   - a mapping that moved or went away: the host port the client dialled and the old target
//     as the reply source, so the next datagram follows the new ruleset;
//   - a mapping that was added (or changed): flows whose original destination is the new host
//     port on a local address (the host IP, or every non-loopback local address of the family
//     for a wildcard), so a client already talking to the host's own service on that port
//     reaches the workload from its next datagram on.
// No unrelated flow is touched (a flow to a remote server's port 53 has a remote original
// destination). TCP is left alone: its connections end by themselves and new ones follow the
// new ruleset.
//
// The table is listed once per family and protocol, matched here, and only the matching flows
// are deleted one by one: a port range costs no more than a single port. In process over
// ctnetlink where the host network has it (flows.ts, netlink.ts), else with the `conntrack`
// command (`-L`, `-D`); the command also takes over when ctnetlink fails.
import type { Runner } from '../backends/exec.js';
import { canonicalIp, isLoopback } from '../config/addr.js';
import type { PortRange } from '../config/ports.js';
import { diffModels, type MappingChanges } from '../model/diff.js';
import type { Mapping, Model } from '../model/model.js';
import { type DatagramProto, type Flow, deleteArgs, listArgs, parseFlows } from './flows.js';
import { type HostNetwork, openHostNetwork } from './network.js';

export type { MappingChanges } from '../model/diff.js';

/** The changes between two models, by diffModels (what a plan calls +, - and ~); none for the same object. */
export function mappingChanges(before: Model | undefined, after: Model): MappingChanges {
  const changes: MappingChanges = { added: [], removed: [] };
  if (before === after) return changes;
  for (const change of diffModels(before, after).changes) {
    if (change.kind !== 'mapping') continue;
    if (change.op !== 'add') changes.removed.push(change.before as Mapping);
    if (change.op !== 'remove') changes.added.push(change.after as Mapping);
  }
  return changes;
}

export { type Flow, deleteArgs, listArgs, parseFlows } from './flows.js';

export interface StaleFlowFilter {
  family: 4 | 6;
  proto: DatagramProto;
  /** The original destination port (the host port the client dialled). */
  ports: PortRange;
  /** Original destination addresses, any of them (undefined: any address). */
  hostIps?: string[];
  /** The reply source, i.e. the DNAT target the flow went to. */
  replySource?: string;
}

export interface LocalAddress {
  family: 4 | 6;
  address: string;
}

const datagram = (m: Mapping): m is Mapping & { proto: DatagramProto } => m.proto === 'udp' || m.proto === 'sctp';

/**
 * The flows to clear between two models. `local`: the host's addresses, for mappings added
 * without a host IP (not needed, and may be empty, when no such mapping was added).
 */
export function staleFlowFilters(before: Model | undefined, after: Model, local: LocalAddress[] = []): StaleFlowFilter[] {
  return staleFlowFiltersFor(mappingChanges(before, after), local);
}

/** The flows to clear for these changes (see staleFlowFilters). */
export function staleFlowFiltersFor(changes: MappingChanges, local: LocalAddress[] = []): StaleFlowFilter[] {
  const filters: StaleFlowFilter[] = [];
  // Mappings that changed or went away: exactly what a plan calls ~ and -.
  for (const mapping of changes.removed) {
    if (!datagram(mapping)) continue;
    for (const target of mapping.targets) {
      const filter: StaleFlowFilter = { family: mapping.family, proto: mapping.proto, ports: mapping.hostPorts, replySource: target.addr };
      if (mapping.hostIp !== undefined) filter.hostIps = [mapping.hostIp];
      filters.push(filter);
    }
  }
  // Mappings that were added or changed (+ and ~): flows to the host port that the new DNAT
  // would now catch. A wildcard mapping never captures loopback (docs/ruleset.md).
  for (const mapping of changes.added) {
    if (!datagram(mapping)) continue;
    const hostIps = mapping.hostIp !== undefined
      ? [mapping.hostIp]
      : [...new Set(local.filter((a) => a.family === mapping.family && !isLoopback(a.address)).map((a) => canonicalIp(a.address) ?? a.address))];
    if (hostIps.length) filters.push({ family: mapping.family, proto: mapping.proto, ports: mapping.hostPorts, hostIps });
  }
  return filters;
}

export function flowMatches(flow: Flow, filter: StaleFlowFilter): boolean {
  return flow.family === filter.family && flow.proto === filter.proto
    && flow.dport >= filter.ports.from && flow.dport <= filter.ports.to
    && (filter.hostIps === undefined || filter.hostIps.includes(flow.dst))
    && (filter.replySource === undefined || filter.replySource === flow.replySrc);
}

/** The host's addresses, read only when an added datagram mapping has no host IP. */
async function localAddresses(runner: Runner, changes: MappingChanges, host: HostNetwork | undefined): Promise<LocalAddress[]> {
  if (!changes.added.some((m) => datagram(m) && m.hostIp === undefined)) return [];
  const network = host ?? (await openHostNetwork(runner));
  try {
    return (await network.addresses()).map((a) => ({ family: a.family, address: a.address }));
  } finally {
    if (!host) network.close();
  }
}

export interface ClearOptions {
  /** The mappings that changed, when the caller knows them (else diffModels of the two models). */
  changes?: MappingChanges;
  /** An open host network to read the addresses from (else one is opened and closed here). */
  host?: HostNetwork;
}

/** Deletes flows that an apply redirects (see the top of this file); returns warnings, never throws. */
export async function clearStaleFlows(runner: Runner, before: Model | undefined, after: Model, options: ClearOptions = {}): Promise<string[]> {
  const changes = options.changes ?? mappingChanges(before, after);
  // Only UDP and SCTP flows are ever cleared: no change of those, no conntrack work at all.
  if (!changes.added.some(datagram) && !changes.removed.some(datagram)) return [];
  let local: LocalAddress[] = [];
  try {
    local = await localAddresses(runner, changes, options.host);
  } catch (error) {
    return [`the host's addresses could not be read (${(error as Error).message}); existing UDP/SCTP flows to new mappings were not cleared`];
  }
  const filters = staleFlowFiltersFor(changes, local);
  const warnings: string[] = [];
  const kinds = [...new Set(filters.map((f) => `${f.family} ${f.proto}`))];
  for (const kind of kinds) {
    const [familyText, proto] = kind.split(' ') as [string, DatagramProto];
    const family = Number(familyText) as 4 | 6;
    const ours = filters.filter((f) => f.family === family && f.proto === proto);
    const kernel = options.host?.conntrack;
    if (kernel) {
      const listed = await kernel.list(family, proto).catch(() => undefined);
      if (listed) {
        for (const flow of listed.filter((f) => ours.some((filter) => flowMatches(f, filter)))) {
          const failed = await kernel.remove(flow).then(() => undefined, (error: unknown) => (error as Error).message);
          if (failed !== undefined) {
            warnings.push(`clearing a ${proto} flow to port ${flow.dport} failed: ${failed}`);
            break;
          }
        }
        continue;
      }
    }
    try {
      const listed = await runner.run('conntrack', listArgs(family, proto));
      if (listed.exitCode !== 0) {
        warnings.push(`listing ${proto} flows failed (${listed.stderr.trim()}); flows redirected by this apply were not cleared`);
        continue;
      }
      for (const flow of parseFlows(listed.stdout, family, proto).filter((f) => ours.some((filter) => flowMatches(f, filter)))) {
        // Exit 1 with "0 flow entries" means the flow ended meanwhile: fine.
        const result = await runner.run('conntrack', deleteArgs(flow));
        if (result.exitCode !== 0 && !/0 flow entries/.test(result.stderr)) {
          warnings.push(`clearing a ${proto} flow to port ${flow.dport} failed: ${result.stderr.trim()}`);
          break;
        }
      }
    } catch (error) {
      warnings.push(`${proto} flows redirected by this apply were not cleared (${(error as Error).message}); install conntrack (apt-get install conntrack)`);
      break;
    }
  }
  return warnings;
}
