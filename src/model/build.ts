// Config -> Model: resolves Docker publish strings, targets, families and names, and
// rejects what only makes sense with the whole config in view. Every problem names its
// path and the value found there; all problems are reported at once.
import { type Cidr, type Family, cidrContains, canonicalIp, ipFamily, isLoopback, parseAddrRange, parseCidr } from '../config/addr.js';
import { type PortRange, formatPortRange, portRangeLength, rangesOverlap, toPortRange } from '../config/ports.js';
import { parsePublish } from '../config/publish.js';
import type { BlockRuleConfig, Config, MappingConfig, NetworkConfig, Proto, SnatRuleConfig } from '../config/schema.js';
import { ConfigError, type ConfigProblem } from '../errors.js';
import type { BlockRule, Egress, Mapping, Model, Network, SnatRule, Target } from './model.js';
import { parseTarget } from './target.js';

const show = (value: unknown): string => JSON.stringify(value);

class Problems {
  readonly list: ConfigProblem[] = [];
  add(path: string, message: string): void {
    this.list.push({ path, message });
  }
}

function cidrs(values: string[] | undefined, path: string, problems: Problems): Cidr[] {
  const out: Cidr[] = [];
  (values ?? []).forEach((text, i) => {
    const parsed = parseCidr(text);
    if (typeof parsed === 'string') problems.add(`${path}[${i}]`, `${show(text)} ${parsed}`);
    else out.push(parsed);
  });
  return out;
}

function buildNetwork(config: NetworkConfig, path: string, problems: Problems): Network {
  const subnets = cidrs(config.subnets, `${path}.subnets`, problems);
  const masquerade: Egress = config.masquerade === false ? { kind: 'none' } : { kind: 'masquerade' };
  const egress: Network['egress'] = { 4: masquerade, 6: masquerade };
  if (config.snat) {
    const to = parseAddrRange(config.snat.to);
    if (typeof to === 'string') {
      problems.add(`${path}.snat.to`, `${show(config.snat.to)} ${to}`);
    } else if (!subnets.some((s) => s.family === to.family)) {
      problems.add(`${path}.snat.to`, `${show(config.snat.to)} is IPv${to.family} but the network has no IPv${to.family} subnet`);
    } else {
      egress[to.family] = config.snat.outInterface
        ? { kind: 'snat', to, outInterface: config.snat.outInterface }
        : { kind: 'snat', to };
    }
  }
  const gatewayMode = config.gatewayMode ?? 'nat';
  if (gatewayMode === 'routed') {
    // Docker's routed mode: workloads keep their own addresses on the way out.
    if (config.masquerade === true) problems.add(`${path}.masquerade`, 'cannot be true with gatewayMode "routed": a routed network has no egress NAT');
    if (config.snat) problems.add(`${path}.snat`, 'cannot be combined with gatewayMode "routed": a routed network has no egress NAT');
    egress[4] = { kind: 'none' };
    egress[6] = { kind: 'none' };
  }
  return { name: config.name, subnets, egress, hairpin: config.hairpin !== false, gatewayMode };
}

/** Docker's unspecified host IPs: `0.0.0.0` and `::` mean every local address of that family. */
const unspecified = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';

interface HostSide {
  hostIp?: string;
  hostPorts: PortRange;
  proto: Proto;
  /** Container port from a publish string; undefined when the target says it. */
  containerPorts?: PortRange;
}

function hostSide(config: MappingConfig, path: string, problems: Problems): HostSide | undefined {
  if (config.publish !== undefined) {
    const clashing = (['hostIp', 'hostPort', 'proto'] as const).filter((key) => config[key] !== undefined);
    if (clashing.length) {
      problems.add(`${path}.publish`, `cannot be combined with ${clashing.join(', ')}: the publish string already says them`);
      return undefined;
    }
    const spec = parsePublish(config.publish);
    if (typeof spec === 'string') {
      problems.add(`${path}.publish`, `${show(config.publish)} ${spec}`);
      return undefined;
    }
    const side: HostSide = { hostPorts: spec.hostPort, proto: spec.proto, containerPorts: spec.containerPort };
    if (spec.hostIp !== undefined) side.hostIp = spec.hostIp;
    return side;
  }
  if (config.hostPort === undefined) {
    problems.add(`${path}.hostPort`, 'is required (or give a Docker "publish" string)');
    return undefined;
  }
  const hostPorts = toPortRange(config.hostPort);
  if (typeof hostPorts === 'string') {
    problems.add(`${path}.hostPort`, `${show(config.hostPort)} ${hostPorts}`);
    return undefined;
  }
  const side: HostSide = { hostPorts, proto: config.proto ?? 'tcp' };
  if (config.hostIp !== undefined) side.hostIp = canonicalIp(config.hostIp) ?? config.hostIp;
  return side;
}

function buildTargets(config: MappingConfig, side: HostSide, path: string, problems: Problems): { targets: Target[]; family: Family } | undefined {
  if ((config.target === undefined) === (config.targets === undefined)) {
    problems.add(`${path}.target`, config.target === undefined ? 'is required (or give "targets")' : 'cannot be combined with "targets"');
    return undefined;
  }
  // The path of a target is spelled out only for a problem (50,000 mappings build here).
  const texts = config.target !== undefined ? [config.target] : config.targets ?? [];
  const pathAt = (i: number): string => (config.target !== undefined ? `${path}.target` : `${path}.targets[${i}]`);
  const targets: Target[] = [];
  let family: Family | undefined;
  const hostLength = portRangeLength(side.hostPorts);
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]!;
    const parsed = parseTarget(text);
    if (typeof parsed === 'string') {
      problems.add(pathAt(i), `${show(text)} ${parsed}`);
      continue;
    }
    if (family !== undefined && parsed.family !== family) {
      problems.add(pathAt(i), `${show(text)} is IPv${parsed.family} but the other targets are IPv${family}; balance within one family`);
      continue;
    }
    family = parsed.family;
    if (parsed.ports && side.containerPorts) {
      problems.add(pathAt(i), `${show(text)} has a port, but the publish string already gives the container port ${formatPortRange(side.containerPorts)}`);
      continue;
    }
    const ports = parsed.ports ?? side.containerPorts ?? side.hostPorts;
    const length = portRangeLength(ports);
    if (length !== hostLength) {
      problems.add(pathAt(i), `${show(text)} has ${length} port(s) but host port ${formatPortRange(side.hostPorts)} has ${hostLength}; ranges must be the same length`);
      continue;
    }
    targets.push({ addr: parsed.addr, ports });
  }
  if (family === undefined || targets.length !== texts.length) return undefined;
  // One target (nearly every mapping): an array of exactly one; one grown by push keeps room
  // for 16, ~140 bytes a mapping (docs/performance.md, "Memory of a cold apply").
  return { targets: targets.length === 1 ? [targets[0]!] : targets, family };
}

function derivedName(mapping: Omit<Mapping, 'name'>): string {
  const host = mapping.hostIp ? `${mapping.hostIp.replace(/:/g, '_')}-` : '';
  const family = mapping.family === 6 && !mapping.hostIp ? '6' : '';
  return `${mapping.proto}${family}-${host}${formatPortRange(mapping.hostPorts)}`;
}

function buildMapping(config: MappingConfig, path: string, networks: Network[], problems: Problems): Mapping | undefined {
  const side = hostSide(config, path, problems);
  if (!side) return undefined;
  const resolved = buildTargets(config, side, path, problems);
  if (!resolved) return undefined;
  const { family, targets } = resolved;
  if (side.hostIp !== undefined) {
    const hostFamily = ipFamily(side.hostIp);
    const where = config.publish !== undefined ? `${path}.publish` : `${path}.hostIp`;
    if (hostFamily !== family) {
      problems.add(where, `host IP ${side.hostIp} is IPv${hostFamily} but the target is IPv${family}: the kernel cannot translate between families`);
      return undefined;
    }
    if (family === 6 && isLoopback(side.hostIp)) {
      problems.add(where, 'host IP ::1 cannot be forwarded: Linux never routes IPv6 loopback traffic to another host');
      return undefined;
    }
    if (unspecified(side.hostIp)) delete side.hostIp;
  }
  const allow = cidrs(config.allow, `${path}.allow`, problems);
  allow.forEach((cidr, i) => {
    if (cidr.family !== family) problems.add(`${path}.allow[${i}]`, `${show(config.allow?.[i])} is IPv${cidr.family} but the mapping is IPv${family}`);
  });
  let network = config.network;
  if (network !== undefined && !networks.some((n) => n.name === network)) {
    problems.add(`${path}.network`, `${show(network)} is not a declared network (declared: ${networks.map((n) => n.name).join(', ') || 'none'})`);
    return undefined;
  }
  // Without an explicit network, the one whose subnet holds the first target.
  network ??= networks.find((n) => n.subnets.some((s) => targets[0] && cidrContains(s, targets[0].addr)))?.name;
  const base: Omit<Mapping, 'name'> = { family, proto: side.proto, hostPorts: side.hostPorts, targets, allow };
  if (side.hostIp !== undefined) base.hostIp = side.hostIp;
  if (network !== undefined) base.network = network;
  if (side.hostIp !== undefined && isLoopback(side.hostIp) && network === undefined) {
    problems.add(`${path}.network`, 'is required for a loopback host IP: natctl must enable route_localnet on the interface toward the target');
    return undefined;
  }
  return { name: config.name ?? derivedName(base), ...base };
}

function buildSnatRule(config: SnatRuleConfig, path: string, index: number, problems: Problems): SnatRule | undefined {
  const source = parseCidr(config.source);
  if (typeof source === 'string') return void problems.add(`${path}.source`, `${show(config.source)} ${source}`);
  const rule: SnatRule = { name: config.name ?? `snat-${index}`, family: source.family, source, action: { kind: 'masquerade' } };
  if (config.destination !== undefined) {
    const destination = parseCidr(config.destination);
    if (typeof destination === 'string') return void problems.add(`${path}.destination`, `${show(config.destination)} ${destination}`);
    if (destination.family !== source.family) return void problems.add(`${path}.destination`, `${show(config.destination)} is not the same family as source ${config.source}`);
    rule.destination = destination;
  }
  if (config.outInterface !== undefined) rule.outInterface = config.outInterface;
  if ((config.to === undefined) === (config.masquerade !== true)) {
    return void problems.add(`${path}.to`, config.to === undefined ? 'is required (or set masquerade: true)' : 'cannot be combined with masquerade: true');
  }
  if (config.to !== undefined) {
    const to = parseAddrRange(config.to);
    if (typeof to === 'string') return void problems.add(`${path}.to`, `${show(config.to)} ${to}`);
    if (to.family !== source.family) return void problems.add(`${path}.to`, `${show(config.to)} is IPv${to.family} but source ${config.source} is IPv${source.family}`);
    rule.action = { kind: 'snat', to };
  }
  return rule;
}

function buildBlockRule(config: BlockRuleConfig, path: string, index: number, problems: Problems): BlockRule | undefined {
  if ((config.hostPort === undefined) === (config.targetPort === undefined)) {
    return void problems.add(`${path}.hostPort`, config.hostPort === undefined ? 'is required (or give targetPort)' : 'cannot be combined with targetPort');
  }
  const match = config.hostPort !== undefined ? 'hostPort' : 'targetPort';
  const value = config.hostPort ?? config.targetPort ?? 0;
  const ports = toPortRange(value);
  if (typeof ports === 'string') return void problems.add(`${path}.${match}`, `${show(value)} ${ports}`);
  const except = cidrs(config.except, `${path}.except`, problems);
  const protos: Proto[] = config.proto ? [config.proto] : ['tcp', 'udp', 'sctp'];
  return { name: config.name ?? `block-${index}`, protos, match, ports, except };
}

function checkUnique(names: { name: string; path: string }[], what: string, problems: Problems): void {
  const seen = new Map<string, string>();
  for (const { name, path } of names) {
    const first = seen.get(name);
    if (first !== undefined) problems.add(path, `${what} name ${show(name)} is already used at ${first}`);
    else seen.set(name, path);
  }
}

/** checkUnique for the mappings of a whole config: the same problems, paths spelled out only for a duplicate. */
function checkUniqueMappings(mappings: { mapping: Mapping; path: string }[], problems: Problems): void {
  const seen = new Map<string, string>();
  for (const { mapping, path } of mappings) {
    const first = seen.get(mapping.name);
    if (first !== undefined) problems.add(`${path}.name`, `mapping name ${show(mapping.name)} is already used at ${first}.name`);
    else seen.set(mapping.name, path);
  }
}

/**
 * The conflict rule, in one place (a full build and the agent API's MappingIndex both use it):
 * two mappings conflict when a packet could match both.
 */
export function mappingsConflict(m: Mapping, n: Mapping): boolean {
  if (m.family !== n.family || m.proto !== n.proto) return false;
  if (!rangesOverlap(m.hostPorts, n.hostPorts)) return false;
  return m.hostIp === undefined || n.hostIp === undefined || m.hostIp === n.hostIp;
}

/** The problem text for `late`, which claims what `early` (at `earlyPath`) already claims. */
function describeConflict(late: Mapping, early: Mapping, earlyPath: string): string {
  const host = late.hostIp ?? early.hostIp ?? (late.family === 4 ? '0.0.0.0' : '[::]');
  return `claims ${host} ${late.proto} port ${formatPortRange(late.hostPorts)}, which ${earlyPath} (${show(early.name)}, ${early.hostIp ?? 'all addresses'} port ${formatPortRange(early.hostPorts)}) already claims`;
}

/**
 * Two mappings conflict when a packet could match both: same family and proto, overlapping
 * ports, and the same host IP or a wildcard on either side. A sweep over mappings sorted by
 * first port keeps this O(n log n) for the 10,000-mapping configs agents produce.
 */
function checkConflicts(mappings: { mapping: Mapping; path: string; order: number }[], problems: Problems): void {
  const groups = new Map<string, typeof mappings>();
  for (const entry of mappings) {
    const key = `${entry.mapping.family}/${entry.mapping.proto}`;
    const group = groups.get(key);
    if (group) group.push(entry);
    else groups.set(key, [entry]);
  }
  const found: { order: number; text: string; path: string }[] = [];
  for (const group of groups.values()) {
    group.sort((x, y) => x.mapping.hostPorts.from - y.mapping.hostPorts.from || x.order - y.order);
    const open: typeof mappings = [];
    for (const entry of group) {
      // Drop the mappings that end before this one starts, in place (no new array per mapping).
      let kept = 0;
      for (const o of open) if (o.mapping.hostPorts.to >= entry.mapping.hostPorts.from) open[kept++] = o;
      open.length = kept;
      for (const other of open) {
        if (!mappingsConflict(entry.mapping, other.mapping)) continue;
        // Report on the later mapping of the two, naming the earlier one.
        const [late, early] = entry.order > other.order ? [entry, other] : [other, entry];
        found.push({ order: late.order, path: late.path, text: describeConflict(late.mapping, early.mapping, early.path) });
      }
      open.push(entry);
    }
  }
  found.sort((x, y) => x.order - y.order).forEach((f) => problems.add(f.path, f.text));
}

export function buildModel(config: Config): Model {
  const problems = new Problems();
  const networks = (config.networks ?? []).map((n, i) => buildNetwork(n, `networks[${i}]`, problems));
  checkUnique(networks.map((n, i) => ({ name: n.name, path: `networks[${i}].name` })), 'network', problems);

  const mappings: { mapping: Mapping; path: string; order: number }[] = [];
  (config.mappings ?? []).forEach((m, i) => {
    const path = `mappings[${i}]`;
    const mapping = buildMapping(m, path, networks, problems);
    if (mapping) mappings.push({ mapping, path, order: i });
  });
  checkUniqueMappings(mappings, problems);
  checkConflicts(mappings, problems);

  const snat = (config.snat ?? []).flatMap((s, i) => buildSnatRule(s, `snat[${i}]`, i, problems) ?? []);
  checkUnique(snat.map((s, i) => ({ name: s.name, path: `snat[${i}].name` })), 'snat rule', problems);
  const block = (config.block ?? []).flatMap((b, i) => buildBlockRule(b, `block[${i}]`, i, problems) ?? []);
  checkUnique(block.map((b, i) => ({ name: b.name, path: `block[${i}].name` })), 'block rule', problems);

  if (problems.list.length) throw new ConfigError(problems.list);
  return { networks, mappings: mappings.map((m) => m.mapping), snat, block };
}

/**
 * The applied mappings by name and by host port, for the agent API (docs/embedding.md): a
 * change is checked against them without building 50,000 mappings again, and the index of the
 * next generation is this one with the change (`evolve`), not a new one.
 */
export class MappingIndex {
  private readonly byName: Map<string, Mapping>;
  /** family/proto/port -> mappings whose range is narrow (at most `narrow` ports). */
  private readonly byPort: Map<string, Mapping[]>;
  /** family/proto -> mappings with wider ranges (few: a sweep over them is cheap). */
  private readonly wide: Map<string, Set<Mapping>>;
  private static readonly narrow = 64;

  constructor(readonly model: Model, from?: MappingIndex) {
    if (from) {
      this.byName = from.byName;
      this.byPort = from.byPort;
      this.wide = from.wide;
      return;
    }
    this.byName = new Map();
    this.byPort = new Map();
    this.wide = new Map();
    for (const mapping of model.mappings) this.insert(mapping);
  }

  private insert(mapping: Mapping): void {
    this.byName.set(mapping.name, mapping);
    const { from, to } = mapping.hostPorts;
    if (to - from >= MappingIndex.narrow) {
      const key = `${mapping.family}/${mapping.proto}`;
      const group = this.wide.get(key);
      if (group) group.add(mapping);
      else this.wide.set(key, new Set([mapping]));
      return;
    }
    for (let port = from; port <= to; port++) {
      const key = `${mapping.family}/${mapping.proto}/${port}`;
      const group = this.byPort.get(key);
      if (group) group.push(mapping);
      else this.byPort.set(key, [mapping]);
    }
  }

  private delete(mapping: Mapping): void {
    const indexed = this.byName.get(mapping.name);
    if (!indexed) return;
    this.byName.delete(mapping.name);
    const { from, to } = indexed.hostPorts;
    if (to - from >= MappingIndex.narrow) {
      this.wide.get(`${indexed.family}/${indexed.proto}`)?.delete(indexed);
      return;
    }
    for (let port = from; port <= to; port++) {
      const key = `${indexed.family}/${indexed.proto}/${port}`;
      const rest = (this.byPort.get(key) ?? []).filter((m) => m !== indexed);
      if (rest.length) this.byPort.set(key, rest);
      else this.byPort.delete(key);
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The indexed mapping of that name: the very object in the model's list. */
  get(name: string): Mapping | undefined {
    return this.byName.get(name);
  }

  /** Position of a mapping in the model (and in the config it was built from); for messages. */
  position(name: string): number | undefined {
    const found = this.model.mappings.findIndex((m) => m.name === name);
    return found < 0 ? undefined : found;
  }

  /** The first existing mapping (other than those in `ignore`) that `mapping` conflicts with. */
  conflict(mapping: Mapping, ignore: ReadonlySet<string>): Mapping | undefined {
    const usable = (other: Mapping): boolean => !ignore.has(other.name) && mappingsConflict(mapping, other);
    const { from, to } = mapping.hostPorts;
    if (to - from >= MappingIndex.narrow) {
      // A wide new range: every mapping of its family and protocol may overlap it.
      for (const other of this.byName.values()) if (usable(other)) return other;
      return undefined;
    }
    for (let port = from; port <= to; port++) {
      for (const other of this.byPort.get(`${mapping.family}/${mapping.proto}/${port}`) ?? []) if (usable(other)) return other;
    }
    for (const other of this.wide.get(`${mapping.family}/${mapping.proto}`) ?? []) if (usable(other)) return other;
    return undefined;
  }

  /**
   * The index of `model`, which is this index's model without `removed` and with `added`
   * (replaced mappings are in both). Costs the change, not the model: this index's tables are
   * taken over, so this index must not be used afterwards.
   */
  evolve(model: Model, removed: readonly Mapping[], added: readonly Mapping[]): MappingIndex {
    for (const mapping of removed) this.delete(mapping);
    for (const mapping of added) this.insert(mapping);
    return new MappingIndex(model, this);
  }
}

/**
 * Builds `configs` alone, against `index.model`'s networks, and checks them with the rules of
 * buildModel: unique names, no conflict with each other or with the indexed mappings (those
 * named in `replacing` are being replaced or removed and do not count). `path(i)` names the
 * config of configs[i] in problems. Throws ConfigError with every problem.
 */
export function buildMappingsAgainst(index: MappingIndex, configs: MappingConfig[], replacing: ReadonlySet<string>, path: (i: number) => string): Mapping[] {
  const problems = new Problems();
  const built: { mapping: Mapping; path: string; order: number }[] = [];
  configs.forEach((config, i) => {
    const mapping = buildMapping(config, path(i), index.model.networks, problems);
    if (mapping) built.push({ mapping, path: path(i), order: i });
  });
  checkUnique(built.map(({ mapping, path: p }) => ({ name: mapping.name, path: `${p}.name` })), 'mapping', problems);
  checkConflicts(built, problems);
  for (const { mapping, path: p } of built) {
    if (index.has(mapping.name) && !replacing.has(mapping.name)) problems.add(`${p}.name`, `mapping name ${show(mapping.name)} is already used by the applied config (replace it, or remove it first)`);
    const other = index.conflict(mapping, replacing);
    if (other) problems.add(p, describeConflict(mapping, other, `mappings[${index.position(other.name) ?? '?'}]`));
  }
  if (problems.list.length) throw new ConfigError(problems.list);
  return built.map((b) => b.mapping);
}
