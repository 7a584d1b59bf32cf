// The model: a validated, normalized config that every backend compiles from. Everything
// here is explicit (families resolved, ports resolved, names assigned), so renderers hold
// no policy of their own.
import { type AddrRange, type Cidr, type Family, isLoopback } from '../config/addr.js';
import type { PortRange } from '../config/ports.js';
import type { Proto } from '../config/schema.js';

export type { AddrRange, Cidr, Family, PortRange, Proto };

export interface Target {
  addr: string;
  /** Same length as the mapping's host ports; position i of the host range goes to position i here. */
  ports: PortRange;
}

export interface Mapping {
  /** Unique; names the mapping's chains. */
  name: string;
  family: Family;
  proto: Proto;
  /** Undefined: every local address of this family. */
  hostIp?: string;
  hostPorts: PortRange;
  targets: Target[];
  /** Empty: every source may connect. */
  allow: Cidr[];
  network?: string;
}

export type Egress =
  | { kind: 'none' }
  | { kind: 'masquerade' }
  | { kind: 'snat'; to: AddrRange; outInterface?: string };

export interface Network {
  name: string;
  subnets: Cidr[];
  /** How each subnet family leaves the host through other interfaces. */
  egress: { 4: Egress; 6: Egress };
  hairpin: boolean;
}

export interface SnatRule {
  name: string;
  family: Family;
  source: Cidr;
  destination?: Cidr;
  outInterface?: string;
  action: { kind: 'masquerade' } | { kind: 'snat'; to: AddrRange };
}

export interface BlockRule {
  name: string;
  protos: Proto[];
  /** hostPort: the published port the client asked for; targetPort: the workload's port. */
  match: 'hostPort' | 'targetPort';
  ports: PortRange;
  except: Cidr[];
}

export interface Model {
  networks: Network[];
  mappings: Mapping[];
  snat: SnatRule[];
  block: BlockRule[];
}

export function emptyModel(): Model {
  return { networks: [], mappings: [], snat: [], block: [] };
}

/** Networks that carry a loopback (127/8) binding: they need route_localnet and a masquerade of 127/8 sources. */
export function loopbackNetworks(model: Model): string[] {
  return [...new Set(model.mappings.flatMap((m) => (m.hostIp !== undefined && isLoopback(m.hostIp) && m.network !== undefined ? [m.network] : [])))];
}
