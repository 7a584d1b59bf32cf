// The bench's configs: N mappings, host ports firstPort.. firstPort+N-1, every target inside
// the sandbox's workload network (docs/performance.md, "How it is measured"). The last mapping
// points at the rate server (c1:81), so the data plane goes through the mapping added last
// (the worst place for a ruleset that is a list); the rest point at other workload addresses.
// Pure: no I/O.
import type { ConfigInput } from '../config/schema.js';

export const firstPort = 10000;
/** Where Sandbox's workload c1 sits, and the ports its two servers listen on. */
export const workload = { address: '198.18.0.2', otherPort: 80, ratePort: 81 } as const;
export const benchNetwork = { name: 'lab0', subnets: ['198.18.0.0/24'] } as const;

export interface BenchMapping {
  name: string;
  hostPort: number;
  address: string;
  port: number;
}

export function benchMapping(index: number, count: number): BenchMapping {
  const hostPort = firstPort + index;
  if (index === count - 1) return { name: `m${index}`, hostPort, address: workload.address, port: workload.ratePort };
  // Spread the rest over the subnet's hosts (.2-.251) so the targets are not all one address.
  return { name: `m${index}`, hostPort, address: `198.18.0.${2 + (index % 250)}`, port: workload.otherPort };
}

/** The mapping "add one" adds to a config of `count` mappings. */
export function extraMapping(count: number): BenchMapping {
  return { name: `m${count}`, hostPort: firstPort + count, address: '198.18.0.3', port: workload.otherPort };
}

/** Host port the data plane's client connects to for a config of `count` mappings. */
export function ratePort(count: number): number {
  return firstPort + count - 1;
}

export function benchMappings(count: number, withExtra = false): BenchMapping[] {
  const mappings = Array.from({ length: count }, (_, i) => benchMapping(i, count));
  if (withExtra) mappings.push(extraMapping(count));
  return mappings;
}

/** natctl's config for `count` mappings (plus the "add one" mapping when withExtra). */
export function benchConfig(count: number, withExtra = false): ConfigInput {
  return {
    version: 1,
    networks: [{ name: benchNetwork.name, subnets: [...benchNetwork.subnets] }],
    mappings: benchMappings(count, withExtra).map((m) => ({ name: m.name, hostPort: m.hostPort, target: `${m.address}:${m.port}` })),
  };
}
