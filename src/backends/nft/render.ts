// Model -> one nftables batch (kept as libnftables JSON, loaded as nft's text syntax by
// text.ts) that atomically replaces natctl's own table and nothing else. The design
// (docs/ruleset.md, "The lean ruleset"): one `inet natctl` table; a simple mapping (one
// target, one exact port, no allow-list) is nothing but three elements with their own
// counters (a DNAT data map, a forward set); the others keep a chain reached through small
// per-protocol verdict maps. Hash lookups only on the hot path: per-packet cost does not
// grow with the number of mappings.
import type { Cidr, Family } from '../../config/addr.js';
import type { PortRange } from '../../config/ports.js';
import { type BlockRule, type Egress, type Mapping, type Model, type Network, type Proto, type SnatRule, type Target, loopbackNetworks, networkHolding, undeclaredTargets } from '../../model/model.js';
import {
  type NftCommand, type NftDocument, type NftMap, type NftSet, type NftObject, type NftStatement, type NftValue,
  accept, concat, counter, ct, daddrIsLocal, drop, element, jump, masquerade, match, meta, payload, prefix, range, ret, set, vmap,
} from './json.js';
import { formatEndpoint } from '../../model/target.js';

export const tableFamily = 'inet';
export const tableName = 'natctl';
const T = { family: tableFamily, table: tableName };

const ipProto = (family: Family): 'ip' | 'ip6' => (family === 4 ? 'ip' : 'ip6');
const addrType = (family: Family): string => (family === 4 ? 'ipv4_addr' : 'ipv6_addr');
const nfproto = (family: Family): string => (family === 4 ? 'ipv4' : 'ipv6');

const protos: readonly Proto[] = ['tcp', 'udp', 'sctp'];

/**
 * A simple mapping is only elements (docs/ruleset.md): one target, one exact host port, no
 * allow-list. Everything else (port ranges, several targets, allow-lists) keeps its chains.
 */
export function isSimple(mapping: Mapping): boolean {
  const [target] = mapping.targets;
  return mapping.targets.length === 1 && target !== undefined && mapping.hostPorts.from === mapping.hostPorts.to
    && target.ports.from === target.ports.to && mapping.allow.length === 0;
}
/**
 * DNAT data maps of simple mappings, keyed by [address .] l4proto . port, giving the target's
 * address . port, one counter per element (= connections: a nat chain sees only a
 * connection's first packet). Hash maps: no `flags interval` on the hot path.
 */
export const dnatMap = (family: Family, bound: boolean): string => `dnat${family}${bound ? '_addr' : ''}`;
/**
 * Forward sets of simple mappings, keyed by the connection's original [address .] port, one
 * counter per element (packets and bytes). One per protocol: nft gives `ct original
 * proto-dst` a type only after a single `meta l4proto`.
 */
export const forwardSet = (family: Family, proto: Proto, bound: boolean): string => `fwd${family}_${proto}${bound ? '_addr' : ''}`;
/** Small per-protocol verdict maps (interval, single field when not host-IP-bound) to the chains of the other mappings. */
export const chainMap = (hook: 'dnat' | 'fwd', family: Family, proto: Proto, bound: boolean): string => `${hook}${family}_${proto}${bound ? '_addr' : ''}_chains`;
/**
 * The generation marker: an empty set named after the stamp (docs/ruleset.md, "Incremental
 * changes"). A set because nft 1.0.6 lists one set by name without reading the rest of the
 * ruleset (a named counter or `get element` makes it dump every element first).
 */
export const markerName = (stamp: string): string => `g-${stamp}`;
/** Regular chains the nat hooks jump to for local destinations (one `fib` lookup per packet). */
export const publishedChain = (local: boolean): string => (local ? 'published-local' : 'published');
export const mappingChain = (name: string): string => `m-${name}`;
export const forwardChain = (name: string): string => `f-${name}`;
export const targetChain = (name: string, index: number): string => `t-${name}-${index}`;
export const blockChain = (name: string): string => `b-${name}`;
/** Direct routed access to published targets of `routed` networks, keyed by daddr . l4proto . dport (docs/ruleset.md). */
export const directMap = (family: Family): string => `direct${family}`;
export const directChain = (index: number): string => `d-${index}`;

const portValue = (ports: PortRange): NftValue => (ports.from === ports.to ? ports.from : range(ports.from, ports.to));
const cidrValue = (cidr: Cidr): NftValue => (cidr.prefix === (cidr.family === 4 ? 32 : 128) ? cidr.addr : prefix(cidr.addr, cidr.prefix));

/** Key of a simple mapping in its DNAT data map. */
export function dnatKey(mapping: Mapping): NftValue {
  const tail = [mapping.proto, mapping.hostPorts.from];
  return mapping.hostIp === undefined ? concat(...tail) : concat(mapping.hostIp, ...tail);
}

/** Key of a mapping in its forward set or map, and of a complex one in its DNAT chain map. */
export function forwardKey(mapping: Mapping): NftValue {
  const port = portValue(mapping.hostPorts);
  return mapping.hostIp === undefined ? port : concat(mapping.hostIp, port);
}

/** DNAT to one target. A port range keeps Docker's positional meaning: host port h goes to target.from + (h - host.from). */
function dnatTo(mapping: Mapping, target: Target): NftStatement[] {
  const dnat: Record<string, unknown> = { family: ipProto(mapping.family), addr: target.addr };
  const { hostPorts } = mapping;
  if (target.ports.from === target.ports.to) {
    dnat.port = target.ports.from;
  } else if (target.ports.from !== hostPorts.from) {
    const pairs: NftValue[] = [];
    for (let offset = 0; offset <= hostPorts.to - hostPorts.from; offset++) pairs.push([hostPorts.from + offset, target.ports.from + offset]);
    dnat.port = { map: { key: payload(mapping.proto, 'dport'), data: set(pairs) } };
  } // else: the same range, the destination port is kept as it is.
  // In an inet table nft needs the transport protocol stated before a DNAT with a port.
  return [match(meta('l4proto'), mapping.proto), { dnat }];
}

function describeMapping(mapping: Mapping): string {
  const host = formatEndpoint(mapping.hostIp ?? (mapping.family === 4 ? '0.0.0.0' : '::'), mapping.hostPorts);
  return `natctl mapping ${mapping.name} ${mapping.proto} ${host}`;
}

/**
 * Collects objects and emits them in dependency order: chains, then maps with their
 * elements inline (elements jump to chains), then rules (which reference maps). Elements go
 * inline because nft 1.0.6's JSON parser refuses a separate `add element` into a
 * single-key interval map (ENOENT), while it takes the same elements in the map itself.
 */
class Batch {
  private readonly maps = new Map<string, NftMap>();
  private readonly sets = new Map<string, NftSet>();
  private readonly counters: NftCommand[] = [];
  private readonly chains: NftCommand[] = [];
  private readonly rules: NftCommand[] = [];
  add(object: NftObject): void {
    if ('map' in object) this.maps.set(object.map.name, { ...object.map });
    else if ('set' in object) this.sets.set(object.set.name, { ...object.set });
    else if ('counter' in object) this.counters.push({ add: object });
    else if ('chain' in object) this.chains.push({ add: object });
    else if ('rule' in object) this.rules.push({ add: object });
  }
  element(map: string, elem: [NftValue, NftValue]): void {
    const target = this.maps.get(map);
    if (!target) throw new Error(`internal: no map ${map}`);
    (target.elem ??= []).push(elem);
  }
  member(name: string, elem: NftValue): void {
    const target = this.sets.get(name);
    if (!target) throw new Error(`internal: no set ${name}`);
    (target.elem ??= []).push(elem);
  }
  commands(): NftCommand[] {
    const maps: NftCommand[] = [...this.maps.values()].map((map) => ({ add: { map } }));
    const sets: NftCommand[] = [...this.sets.values()].map((set) => ({ add: { set } }));
    return [...this.counters, ...this.chains, ...maps, ...sets, ...this.rules];
  }
  chain(name: string, base?: { type: 'filter' | 'nat'; hook: string; prio: number }): void {
    this.add({ chain: base ? { ...T, name, ...base, policy: 'accept' } : { ...T, name } });
  }
  rule(chain: string, expr: NftStatement[], comment?: string): void {
    this.add({ rule: comment ? { ...T, chain, expr, comment } : { ...T, chain, expr } });
  }
}

function directMaps(batch: Batch, model: Model): void {
  if (!model.networks.some((n) => n.gatewayMode === 'routed')) return;
  for (const family of [4, 6] as const) {
    batch.add({ map: { ...T, name: directMap(family), type: [addrType(family), 'inet_proto', 'inet_service'], map: 'verdict', flags: ['interval'] } });
  }
}

const counted: NftStatement[] = [{ counter: null }];

function dispatchMaps(batch: Batch): void {
  for (const family of [4, 6] as const) {
    for (const bound of [false, true]) {
      const dnatType = bound ? [addrType(family), 'inet_proto', 'inet_service'] : ['inet_proto', 'inet_service'];
      // Concatenated data: declared in nft's text syntax (nft 1.0.6's JSON parser cannot, docs/ruleset.md).
      batch.add({ map: { ...T, name: dnatMap(family, bound), type: dnatType, map: `${addrType(family)} . inet_service`, stmt: counted } });
      for (const proto of protos) {
        const type = bound ? [addrType(family), 'inet_service'] : 'inet_service';
        batch.add({ set: { ...T, name: forwardSet(family, proto, bound), type, stmt: counted } });
        batch.add({ map: { ...T, name: chainMap('dnat', family, proto, bound), type, map: 'verdict', flags: ['interval'] } });
        batch.add({ map: { ...T, name: chainMap('fwd', family, proto, bound), type, map: 'verdict', flags: ['interval'] } });
      }
    }
  }
}

/**
 * The rules of a `published` chain: simple mappings through the data maps, the others through
 * the chain maps. Wildcard mappings first, then host-IP-bound ones: no packet can match both
 * (a wildcard mapping conflicts with every binding of its port, src/model/build.ts), and the
 * common case, a wildcard IPv4 mapping, then costs one lookup per new connection.
 */
function dnatDispatch(batch: Batch, chain: string, skipLoopback: boolean): void {
  for (const family of [4, 6] as const) {
    const dport = payload('th', 'dport');
    const daddr = payload(ipProto(family), 'daddr');
    // Like Docker's `! -d 127.0.0.0/8`: a wildcard mapping never captures loopback; only an explicit loopback host IP (below) does.
    const notLoopback = skipLoopback ? [match(daddr, family === 4 ? prefix('127.0.0.0', 8) : '::1', '!=')] : [match(meta('nfproto'), nfproto(family))];
    batch.rule(chain, [...notLoopback, { dnat: { family: ipProto(family), addr: { map: { key: concat(meta('l4proto'), dport), data: `@${dnatMap(family, false)}` } } } }]);
    for (const proto of protos) batch.rule(chain, [...notLoopback, vmap(payload(proto, 'dport'), `@${chainMap('dnat', family, proto, false)}`)]);
    batch.rule(chain, [{ dnat: { family: ipProto(family), addr: { map: { key: concat(daddr, meta('l4proto'), dport), data: `@${dnatMap(family, true)}` } } } }]);
    // `tcp dport` brings its own `meta l4proto tcp` (nft adds the dependency and lists it without): written so, a read-back compares equal.
    for (const proto of protos) batch.rule(chain, [vmap(concat(daddr, payload(proto, 'dport')), `@${chainMap('dnat', family, proto, true)}`)]);
  }
}

/** The forward dispatch of DNATed connections, every packet: wildcard mappings first (see dnatDispatch). */
function forwardDispatch(batch: Batch): void {
  const original = ct('proto-dst', { dir: 'original' });
  const isDnat = match(ct('status'), 'dnat', 'in');
  for (const family of [4, 6] as const) {
    for (const proto of protos) {
      const l4 = match(meta('l4proto'), proto);
      const bound = concat(ct('daddr', { family: ipProto(family), dir: 'original' }), original);
      const wildcard = [l4, isDnat, match(meta('nfproto'), nfproto(family))];
      batch.rule('forward', [...wildcard, match(original, `@${forwardSet(family, proto, false)}`), accept()]);
      batch.rule('forward', [...wildcard, vmap(original, `@${chainMap('fwd', family, proto, false)}`)]);
      batch.rule('forward', [l4, isDnat, match(bound, `@${forwardSet(family, proto, true)}`), accept()]);
      batch.rule('forward', [l4, isDnat, vmap(bound, `@${chainMap('fwd', family, proto, true)}`)]);
    }
  }
}

/**
 * A simple mapping as elements only: DNAT data map and forward set, each counted per element.
 * The DNAT element names the mapping (its comment); the forward element has the same key and
 * is named through it (listing.ts): one comment per mapping keeps the load smaller.
 */
function renderSimple(batch: Batch, mapping: Mapping, target: Target): void {
  const bound = mapping.hostIp !== undefined;
  batch.element(dnatMap(mapping.family, bound), [element(dnatKey(mapping), mapping.name), concat(target.addr, target.ports.from)]);
  batch.member(forwardSet(mapping.family, mapping.proto, bound), element(forwardKey(mapping)));
}

/** What one mapping adds to the ruleset (its chains, rules and dispatch elements), for deltas (delta.ts). */
export function renderMappingCommands(mapping: Mapping): NftCommand[] {
  const batch = new Batch();
  dispatchMaps(batch);
  renderMapping(batch, mapping);
  return batch.commands().flatMap((command): NftCommand[] => {
    if (!('add' in command)) return [];
    const object = command.add;
    if ('map' in object) return object.map.elem?.length ? [command] : [];
    if ('set' in object) return object.set.elem?.length ? [command] : [];
    return [command];
  });
}

function renderMapping(batch: Batch, mapping: Mapping): void {
  const [only] = mapping.targets;
  if (isSimple(mapping) && only) return renderSimple(batch, mapping, only);
  const comment = describeMapping(mapping);
  const chain = mappingChain(mapping.name);
  batch.chain(chain);
  const [first] = mapping.targets;
  if (mapping.targets.length === 1 && first) {
    batch.rule(chain, [counter(), ...dnatTo(mapping, first)], comment);
  } else {
    // numgen inc: new connections go round-robin over the targets (only a connection's first packet reaches a nat chain).
    const spread = mapping.targets.map((_, i): NftValue => [i, { goto: { target: targetChain(mapping.name, i) } }]);
    batch.rule(chain, [counter(), vmap({ numgen: { mode: 'inc', mod: mapping.targets.length, offset: 0 } }, set(spread))], comment);
    mapping.targets.forEach((target, i) => {
      batch.chain(targetChain(mapping.name, i));
      batch.rule(targetChain(mapping.name, i), dnatTo(mapping, target));
    });
  }

  const forward = forwardChain(mapping.name);
  batch.chain(forward);
  const guard: NftStatement[] = [counter()];
  batch.rule(forward, guard, comment);
  if (mapping.allow.length) {
    // Judged on the connection's original source, so replies to an allowed client pass too.
    batch.rule(forward, [match(ct('saddr', { family: ipProto(mapping.family), dir: 'original' }), oneOrSet(mapping.allow.map(cidrValue)), '!='), drop()]);
  }
  batch.rule(forward, [accept()]);

  const bound = mapping.hostIp !== undefined;
  batch.element(chainMap('dnat', mapping.family, mapping.proto, bound), [forwardKey(mapping), jump(chain)]);
  batch.element(chainMap('fwd', mapping.family, mapping.proto, bound), [forwardKey(mapping), jump(forward)]);
}

function renderBlock(batch: Batch, rule: BlockRule, routed: Network[]): void {
  const chain = blockChain(rule.name);
  batch.chain(chain);
  for (const family of [4, 6] as const) {
    const except = rule.except.filter((c) => c.family === family);
    if (except.length) batch.rule(chain, [match(ct('saddr', { family: ipProto(family), dir: 'original' }), oneOrSet(except.map(cidrValue))), ret()]);
  }
  batch.rule(chain, [counter(), drop()], `natctl block ${rule.name}`);
  const port = portValue(rule.ports);
  const selector = rule.match === 'hostPort'
    ? [match(ct('status'), 'dnat', 'in'), match(ct('proto-dst', { dir: 'original' }), port)]
    // The workload's port: what the server answers from, whatever the client dialled; only for
    // connections DNATed to a workload, so the workloads' own outbound traffic to that port passes.
    : [match(ct('status'), 'dnat', 'in'), match(ct('proto-src', { dir: 'reply' }), port)];
  // One rule per protocol: the port match needs a single l4proto before it.
  for (const proto of rule.protos) batch.rule('block', [match(meta('l4proto'), proto), ...selector, jump(chain)]);
  if (rule.match !== 'targetPort') return;
  // Connections routed straight to a workload of a `routed` network never pass a DNAT: their
  // original destination is the workload itself, and the rule covers them too.
  for (const family of [4, 6] as const) {
    const subnets = routedSubnets(routed, family);
    if (!subnets.length) continue;
    for (const proto of rule.protos) {
      batch.rule('block', [match(meta('l4proto'), proto), match(ct('daddr', { family: ipProto(family), dir: 'original' }), oneOrSet(subnets.map(cidrValue))), match(ct('proto-src', { dir: 'reply' }), port), jump(chain)]);
    }
  }
}

/** A single value as itself: nft lists a one-element anonymous set back as its element. */
const oneOrSet = (values: NftValue[]): NftValue => (values.length === 1 && values[0] !== undefined ? values[0] : set(values));

function routedSubnets(networks: Network[], family: Family): Cidr[] {
  return networks.filter((n) => n.gatewayMode === 'routed').flatMap((n) => n.subnets.filter((s) => s.family === family));
}

function egressRule(network: Network, subnet: Cidr, egress: Egress): NftStatement[] | undefined {
  if (egress.kind === 'none') return undefined;
  const base = [match(payload(ipProto(subnet.family), 'saddr'), cidrValue(subnet)), match(meta('oifname'), network.name, '!=')];
  if (egress.kind === 'masquerade') return [...base, masquerade()];
  const out = egress.outInterface ? [match(meta('oifname'), egress.outInterface)] : [];
  return [...base, ...out, snatTo(subnet.family, egress.to.from, egress.to.to)];
}

function snatTo(family: Family, from: string, to: string): NftStatement {
  return { snat: { family: ipProto(family), addr: from === to ? from : range(from, to) } };
}

function renderSnatRule(batch: Batch, rule: SnatRule): void {
  const expr: NftStatement[] = [match(payload(ipProto(rule.family), 'saddr'), cidrValue(rule.source))];
  if (rule.destination) expr.push(match(payload(ipProto(rule.family), 'daddr'), cidrValue(rule.destination)));
  if (rule.outInterface) expr.push(match(meta('oifname'), rule.outInterface));
  expr.push(rule.action.kind === 'masquerade' ? masquerade() : snatTo(rule.family, rule.action.to.from, rule.action.to.to));
  batch.rule('postrouting', expr, `natctl snat ${rule.name}`);
}

function renderPostrouting(batch: Batch, model: Model): void {
  for (const network of model.networks) {
    if (!network.hairpin) continue;
    for (const subnet of network.subnets) {
      // Hairpin: a workload reaching a published port through the host address is sent back
      // into its own network; masquerade so the reply returns through the host and is un-DNATed.
      batch.rule('postrouting', [match(ct('status'), 'dnat', 'in'), match(meta('oifname'), network.name), match(payload(ipProto(subnet.family), 'saddr'), cidrValue(subnet)), masquerade()], `natctl hairpin ${network.name}`);
    }
  }
  const undeclared = undeclaredTargets(model); // one pass over the mappings for both families
  for (const family of [4, 6] as const) {
    const targets = undeclared.filter((t) => t.family === family);
    if (!targets.length) continue;
    // Docker's per-mapping `-s C -d C -j MASQUERADE`: a target in no declared network reaching its
    // own published port through the host address would otherwise get its own address as the
    // source back, which the kernel drops as a martian; masqueraded, it answers the host.
    const pairs = targets.map((t) => concat(t.addr, t.addr));
    batch.rule('postrouting', [match(ct('status'), 'dnat', 'in'), match(concat(payload(ipProto(family), 'saddr'), payload(ipProto(family), 'daddr')), set(pairs)), masquerade()], 'natctl hairpin targets outside the networks');
  }
  for (const name of loopbackNetworks(model)) {
    // A host process dialling 127.0.0.1 keeps that source after DNAT; rewrite it so the workload can answer.
    batch.rule('postrouting', [match(payload('ip', 'saddr'), prefix('127.0.0.0', 8)), match(meta('oifname'), name), masquerade()], `natctl loopback ${name}`);
  }
  // Explicit snat rules are more specific than a network's default egress: they go first.
  for (const rule of model.snat) renderSnatRule(batch, rule);
  for (const network of model.networks) {
    for (const subnet of network.subnets) {
      const expr = egressRule(network, subnet, network.egress[subnet.family]);
      if (expr) batch.rule('postrouting', expr, `natctl egress ${network.name}`);
    }
  }
}

/** Published targets of mappings in `routed` networks, reachable by direct routing. */
interface DirectEntry { family: Family; addr: string; proto: Proto; from: number; to: number; mapping: Mapping }

function directEntries(model: Model): DirectEntry[] {
  const out: DirectEntry[] = [];
  // Only a routed network has entries: without one, no mapping is looked up (50,000 of them at agent scale).
  if (!model.networks.some((n) => n.gatewayMode === 'routed')) return out;
  for (const mapping of model.mappings) {
    for (const target of mapping.targets) {
      const network = model.networks.find((n) => n.name === mapping.network && n.subnets.some((s) => s.family === mapping.family)) ?? networkHolding(model, target.addr);
      if (network?.gatewayMode !== 'routed') continue;
      out.push({ family: mapping.family, addr: target.addr, proto: mapping.proto, from: target.ports.from, to: target.ports.to, mapping });
    }
  }
  return out;
}

/**
 * The direct maps' elements. Mappings may share or overlap target ports (two host ports to one
 * workload port), and interval maps refuse overlapping keys: ports are cut into segments, and a
 * segment lets in a source when any mapping covering it does (no allow-list: everyone).
 */
function renderDirect(batch: Batch, model: Model): void {
  const groups = new Map<string, DirectEntry[]>();
  for (const entry of directEntries(model)) {
    const key = `${entry.family} ${entry.addr} ${entry.proto}`;
    groups.set(key, [...(groups.get(key) ?? []), entry]);
  }
  const chains = new Map<string, string>();
  for (const entries of groups.values()) {
    const cuts = [...new Set(entries.flatMap((e) => [e.from, e.to + 1]))].sort((a, b) => a - b);
    // Adjacent segments with the same verdict are emitted as one element.
    let pending: { from: number; to: number; verdict: NftStatement; key: NftValue[] } | undefined;
    const flush = (): void => {
      if (!pending) return;
      const [addr, proto] = pending.key;
      batch.element(directMap(entries[0]?.family ?? 4), [concat(addr ?? '', proto ?? '', pending.from === pending.to ? pending.from : range(pending.from, pending.to)), pending.verdict]);
      pending = undefined;
    };
    for (let i = 0; i + 1 < cuts.length; i++) {
      const from = cuts[i] as number;
      const to = (cuts[i + 1] as number) - 1;
      const covering = entries.filter((e) => e.from <= from && e.to >= to);
      const [first] = covering;
      if (!first) continue;
      let verdict: NftStatement;
      if (covering.some((e) => e.mapping.allow.length === 0)) {
        verdict = accept();
      } else {
        const allow = [...new Map(covering.flatMap((e) => e.mapping.allow).map((c) => [`${c.addr}/${c.prefix}`, c])).values()];
        const names = [...new Set(covering.map((e) => e.mapping.name))].join(', ');
        const signature = `${first.family} ${allow.map((c) => `${c.addr}/${c.prefix}`).sort().join(' ')}`;
        let chain = chains.get(signature);
        if (chain === undefined) {
          chain = directChain(chains.size);
          chains.set(signature, chain);
          batch.chain(chain);
          // The mapping's allow-list, judged as in f-NAME: a direct route is no way around it.
          batch.rule(chain, [match(payload(ipProto(first.family), 'saddr'), oneOrSet(allow.map(cidrValue)), '!='), drop()], `natctl direct ${names}`);
          batch.rule(chain, [accept()]);
        }
        verdict = jump(chain);
      }
      if (pending && pending.to + 1 === from && JSON.stringify(pending.verdict) === JSON.stringify(verdict)) {
        pending.to = to;
      } else {
        flush();
        pending = { from, to, verdict, key: [first.addr, first.proto] };
      }
    }
    flush();
  }
}

/**
 * Filter at prerouting priority -150: after conntrack (-200), so replies are told from new
 * connections, and before DNAT (-100), so the destination is still the one the client chose.
 */
function renderGuard(batch: Batch, model: Model): void {
  const rules: NftStatement[][] = [];
  const comments: string[] = [];
  const add = (expr: NftStatement[], comment: string): void => {
    rules.push(expr);
    comments.push(comment);
  };
  if (loopbackNetworks(model).length) {
    // route_localnet lets the kernel route 127/8 arriving on the network's interface: without
    // this drop (Docker's raw PREROUTING `-d 127.0.0.0/8 ! -i lo -j DROP`) a workload routing
    // 127.0.0.1 via its gateway would reach every host service bound to loopback.
    add([match(meta('iifname'), 'lo', '!='), match(payload('ip', 'daddr'), prefix('127.0.0.0', 8)), drop()], 'natctl loopback only from lo');
  }
  // Written as nft lists it back (`==`, sorted), so a read-back compares equal.
  const unreplied = match(ct('state'), set(['invalid', 'new', 'untracked']));
  for (const network of model.networks) {
    if (network.gatewayMode === 'nat-unprotected') continue;
    for (const subnet of network.subnets) {
      // Routed to a workload's own address from another interface (not the host's address on
      // the network: that is fib type local). Docker 28's gateway mode `nat` drops it in raw
      // PREROUTING; `routed` lets it reach published targets only.
      const direct = [match(meta('iifname'), network.name, '!='), match(payload(ipProto(subnet.family), 'daddr'), cidrValue(subnet)), match({ fib: { result: 'type', flags: ['daddr'] } }, 'local', '!='), unreplied];
      if (network.gatewayMode === 'routed') {
        add([...direct, vmap(concat(payload(ipProto(subnet.family), 'daddr'), meta('l4proto'), payload('th', 'dport')), `@${directMap(subnet.family)}`)], `natctl routed ${network.name}`);
        // Like Docker's routed mode: ICMP passes (path MTU, neighbour discovery, ping).
        add([...direct, match(meta('l4proto'), subnet.family === 4 ? 'icmp' : 'ipv6-icmp'), accept()], `natctl routed ${network.name}`);
      }
      add([...direct, drop()], `natctl direct ${network.name}`);
    }
  }
  if (!rules.length) return;
  batch.chain('guard', { type: 'filter', hook: 'prerouting', prio: -150 });
  rules.forEach((expr, i) => batch.rule('guard', expr, comments[i]));
}

/** The whole ruleset as one atomic batch: create-if-missing, delete, recreate, fill. */
export function renderNftDocument(model: Model, options: { stamp?: string } = {}): NftDocument {
  const batch = new Batch();
  dispatchMaps(batch);
  directMaps(batch, model);

  renderGuard(batch, model);
  batch.chain('prerouting', { type: 'nat', hook: 'prerouting', prio: -100 });
  batch.chain('output', { type: 'nat', hook: 'output', prio: -100 });
  // One fib lookup per packet: local destinations go on to the published chains.
  for (const local of [false, true]) {
    batch.rule(local ? 'output' : 'prerouting', [daddrIsLocal(), jump(publishedChain(local))]);
    batch.chain(publishedChain(local));
    dnatDispatch(batch, publishedChain(local), local);
  }
  batch.chain('postrouting', { type: 'nat', hook: 'postrouting', prio: 100 });
  batch.chain('forward', { type: 'filter', hook: 'forward', prio: 0 });
  // Operator block rules come first, like Docker's DOCKER-USER: before any accept. Without
  // any, no jump: every forwarded packet passes here (a change of block rules is a full load).
  batch.chain('block');
  if (model.block.length) batch.rule('forward', [jump('block')]);
  for (const network of model.networks) {
    if (network.hairpin) continue;
    // hairpin: false. With br_netfilter a sibling's connection DNATed back into its own bridge is
    // bridged to the target, and the target's reply is bridged back and un-DNATed: hairpin works
    // without any masquerade. Routed or bridged, such a connection enters and leaves the network's
    // interface with a DNAT: drop it here, before the dispatch accepts it.
    batch.rule('forward', [match(meta('iifname'), network.name), match(meta('oifname'), network.name), match(ct('status'), 'dnat', 'in'), drop()], `natctl no hairpin ${network.name}`);
  }
  forwardDispatch(batch);
  for (const network of model.networks) {
    batch.rule('forward', [match(meta('iifname'), network.name), accept()], `natctl egress ${network.name}`);
    batch.rule('forward', [match(meta('oifname'), network.name), match(ct('state'), set(['established', 'related'])), accept()], `natctl replies ${network.name}`);
  }

  for (const rule of model.block) renderBlock(batch, rule, model.networks);
  for (const mapping of model.mappings) renderMapping(batch, mapping);
  renderDirect(batch, model);
  renderPostrouting(batch, model);
  // The marker last, where a delta adds it: the listing is the same after a full load or a delta.
  if (options.stamp !== undefined) batch.add({ set: { ...T, name: markerName(options.stamp), type: 'mark' } });
  const table = { family: tableFamily, name: tableName };
  // add + delete + add: replaces the table whether or not it exists, in one transaction.
  return { nftables: [{ add: { table } }, { delete: { table } }, { add: { table } }, ...batch.commands()] };
}

/** Removes natctl's table if present, touching nothing else. */
export function renderNftFlush(): NftDocument {
  const table = { family: tableFamily, name: tableName };
  return { nftables: [{ add: { table } }, { delete: { table } }] };
}
