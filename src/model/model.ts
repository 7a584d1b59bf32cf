// The model: a validated, normalized config that every backend compiles from. Everything
// here is explicit (families resolved, ports resolved, names assigned), so renderers hold
// no policy of their own.
import { type AddrRange, type Cidr, type Family, cidrContains, isLoopback } from '../config/addr.js';
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
  /**
   * Docker 28's gateway mode (docs/config.md): `nat` drops direct routed access from other
   * interfaces to the subnets; `nat-unprotected` leaves it open; `routed` has no egress NAT
   * and lets direct routed access reach published targets only.
   */
  gatewayMode: GatewayMode;
}

export type GatewayMode = 'nat' | 'nat-unprotected' | 'routed';

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

/** The declared network whose subnet holds `ip`, if any. */
export function networkHolding(model: Pick<Model, 'networks'>, ip: string): Network | undefined {
  return model.networks.find((n) => n.subnets.some((s) => cidrContains(s, ip)));
}

/**
 * Targets of mappings that lie in no declared network: they get Docker's per-mapping hairpin
 * masquerade (`-s C -d C`), so a workload reaches its own published port (docs/ruleset.md).
 */
export function undeclaredTargets(model: Model): { family: Family; addr: string }[] {
  const seen = new Map<string, { family: Family; addr: string }>();
  for (const mapping of model.mappings) {
    if (mapping.network !== undefined) continue;
    for (const target of mapping.targets) {
      if (!networkHolding(model, target.addr)) seen.set(target.addr, { family: mapping.family, addr: target.addr });
    }
  }
  return [...seen.values()];
}

/** Networks that carry a loopback (127/8) binding: they need route_localnet and a masquerade of 127/8 sources. */
export function loopbackNetworks(model: Model): string[] {
  // A loop, not flatMap: no array per mapping (every render and apply walks 50,000 of them).
  const names = new Set<string>();
  for (const m of model.mappings) if (m.hostIp !== undefined && m.network !== undefined && isLoopback(m.hostIp)) names.add(m.network);
  return [...names];
}
