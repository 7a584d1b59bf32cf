// A UDP (or SCTP) client that keeps sending keeps its conntrack entry, and with it the DNAT
// target chosen by its first packet: after a mapping moves or disappears, such a flow would
// go on reaching the old target for as long as it stays busy. natctl deletes those entries
// (as kube-proxy does), matched narrowly: the host port the client dialled and the old
// target as the reply source, so no unrelated flow is touched. TCP is left alone: its
// connections end by themselves and new ones follow the new ruleset.
import type { Runner } from '../backends/exec.js';
import { diffModels } from '../model/diff.js';
import type { Mapping, Model } from '../model/model.js';

/** More ports than this in one mapping are not walked one by one. */
const maxPortsPerMapping = 1024;

export interface StaleFlowFilter {
  family: 4 | 6;
  proto: 'udp' | 'sctp';
  port: number;
  hostIp?: string;
  replySource: string;
}

export function staleFlowFilters(before: Model | undefined, after: Model): { filters: StaleFlowFilter[]; skipped: string[] } {
  const filters: StaleFlowFilter[] = [];
  const skipped: string[] = [];
  // Mappings that changed or went away: exactly what a plan calls ~ and -.
  const gone = diffModels(before, after).changes.flatMap((c) => (c.kind === 'mapping' && c.op !== 'add' ? [c.before as Mapping] : []));
  for (const mapping of gone) {
    if (mapping.proto !== 'udp' && mapping.proto !== 'sctp') continue;
    const count = mapping.hostPorts.to - mapping.hostPorts.from + 1;
    if (count > maxPortsPerMapping) {
      skipped.push(mapping.name);
      continue;
    }
    for (let port = mapping.hostPorts.from; port <= mapping.hostPorts.to; port++) {
      for (const target of mapping.targets) {
        const filter: StaleFlowFilter = { family: mapping.family, proto: mapping.proto, port, replySource: target.addr };
        if (mapping.hostIp !== undefined) filter.hostIp = mapping.hostIp;
        filters.push(filter);
      }
    }
  }
  return { filters, skipped };
}

export function conntrackArgs(filter: StaleFlowFilter): string[] {
  const args = ['-D', '-f', filter.family === 4 ? 'ipv4' : 'ipv6', '-p', filter.proto, '--orig-port-dst', String(filter.port), '--reply-src', filter.replySource];
  if (filter.hostIp !== undefined) args.push('--orig-dst', filter.hostIp);
  return args;
}

/** Deletes stale flows of mappings that changed or went away; returns warnings, never throws. */
export async function clearStaleFlows(runner: Runner, before: Model | undefined, after: Model): Promise<string[]> {
  const { filters, skipped } = staleFlowFilters(before, after);
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
