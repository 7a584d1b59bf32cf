// Model -> natctl's chains in the nat and filter tables of iptables-legacy, IPv4 and IPv6
// (docs/iptables.md). The same behaviour as the nft ruleset (docs/ruleset.md), with one
// difference forced by iptables: no verdict maps, so mappings are found through dispatch
// chains bucketed by port, a few levels deep, and a packet walks tens of rules at any size.
// Every rule is written exactly as iptables-save prints it back, so verify compares text.
import type { Cidr, Family } from '../../config/addr.js';
import type { PortRange } from '../../config/ports.js';
import { ConfigError, type ConfigProblem } from '../../errors.js';
import { type BlockRule, type Egress, type Mapping, type Model, type Network, type Proto, type SnatRule, type Target, loopbackNetworks, networkHolding, undeclaredTargets } from '../../model/model.js';
import { formatEndpoint } from '../../model/target.js';
import { ipFamily, ipToBig, isLoopback } from '../../config/addr.js';
import { type IptTable, type Jump, type TableRules, restoreText, ruleChain, tableKey } from './rules.js';

export const chains = {
  prerouting: 'NATCTL-PREROUTING',
  output: 'NATCTL-OUTPUT',
  postrouting: 'NATCTL-POSTROUTING',
  forward: 'NATCTL-FORWARD',
  dnat: 'NATCTL-DNAT',
  loopback: 'NATCTL-LOOPBACK',
  block: 'NATCTL-BLOCK',
  guard: 'NATCTL-GUARD',
} as const;
const dnatProtoChain = (proto: Proto): string => `NATCTL-DNAT-${proto.toUpperCase()}`;
const forwardProtoChain = (proto: Proto): string => `NATCTL-FWD-${proto.toUpperCase()}`;
export const balanceChain = (index: number): string => `NATCTL-LB-${index}`;
export const allowChain = (index: number): string => `NATCTL-ALLOW-${index}`;
export const blockRuleChain = (index: number): string => `NATCTL-BLOCK-${index}`;
/** Direct routed access to the published targets of the `routed` network at this index (mangle). */
export const routedChain = (index: number): string => `NATCTL-ROUTED-${index}`;

/** At most this many rules in a dispatch chain; more mappings add a level (32^3 = 32,768 per level 3). */
export const dispatchWidth = 32;

const protos: readonly Proto[] = ['tcp', 'udp', 'sctp'];

// Restore input is split on whitespace, and `"` and `\` quote and escape: a value carrying any
// of them, or a newline, could end a rule or start another one. Everything dynamic that goes
// into a rule passes through one of these two guards (a config that fails them is refused by
// `iptablesProblems` first; reaching here means a bug).
const unsafeValue = /[\s"'\\]/;
function value(text: string): string {
  if (text === '' || unsafeValue.test(text)) throw new Error(`internal: unsafe value for iptables-restore: ${JSON.stringify(text)}`);
  return text;
}
const safeComment = /^[A-Za-z0-9 _.:[\]/-]{1,255}$/;
function comment(text: string): string {
  if (!safeComment.test(text)) throw new Error(`internal: unsafe comment for iptables-restore: ${JSON.stringify(text)}`);
  return `-m comment --comment "${text}"`;
}

/**
 * What iptables cannot say: an interface name ending in "+" is a wildcard in iptables (all
 * names with that prefix), never a literal name. Such configs are refused, naming the field.
 */
export function iptablesProblems(model: Model): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const check = (name: string | undefined, path: string): void => {
    if (name !== undefined && name.endsWith('+')) {
      problems.push({ path, message: `${JSON.stringify(name)} ends in "+", which iptables reads as a wildcard (every interface starting with ${JSON.stringify(name.slice(0, -1))}); the iptables-legacy backend cannot match it literally` });
    }
  };
  model.networks.forEach((network, i) => {
    check(network.name, `networks[${i}].name`);
    for (const egress of [network.egress[4], network.egress[6]]) if (egress.kind === 'snat') check(egress.outInterface, `networks[${i}].snat.outInterface`);
  });
  model.snat.forEach((rule, i) => check(rule.outInterface, `snat[${i}].outInterface`));
  return problems.filter((p, i) => problems.findIndex((q) => q.path === p.path) === i);
}

const hostBits = (family: Family): number => (family === 4 ? 32 : 128);

/**
 * An address as iptables-save prints it (glibc's inet_ntop): RFC 5952 like the model's form,
 * except that IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6
 * addresses end in dotted decimal.
 */
export function ntop(addr: string): string {
  if (ipFamily(addr) !== 6) return addr;
  const bits = ipToBig(addr);
  const high = bits >> 32n;
  const low = bits & 0xffffffffn;
  const dotted = [24n, 16n, 8n, 0n].map((shift) => String((low >> shift) & 0xffn)).join('.');
  if (high === 0xffffn) return `::ffff:${dotted}`;
  if (high === 0n && low >> 16n !== 0n) return `::${dotted}`;
  return addr;
}

/** A prefix of length 0 matches every address: iptables drops `-s`/`-d 0.0.0.0/0` (and `::/0`) from a rule. */
const addrMatch = (flag: '-s' | '-d', cidr: Cidr): string => (cidr.prefix === 0 ? '' : `${flag} ${value(`${ntop(cidr.addr)}/${cidr.prefix}`)} `);
const hostPrefix = (addr: string, family: Family): string => value(`${ntop(addr)}/${hostBits(family)}`);
/** conntrack's form: a host address without its prefix length. */
const ctAddr = (cidr: Cidr): string => value(cidr.prefix === hostBits(cidr.family) ? ntop(cidr.addr) : `${ntop(cidr.addr)}/${cidr.prefix}`);
const snatTo = (from: string, to: string): string => `-j SNAT --to-source ${value(from === to ? ntop(from) : `${ntop(from)}-${ntop(to)}`)}`;
const ports = (range: PortRange): string => (range.from === range.to ? String(range.from) : `${range.from}:${range.to}`);
const dport = (proto: Proto, range: PortRange): string => `-p ${proto} -m ${proto} --dport ${ports(range)}`;

/** DNAT to one target. A shifted range keeps Docker's positional meaning through `/BASE`: port h goes to target.from + (h - BASE). */
function dnatTo(mapping: Mapping, target: Target): string {
  const addr = ntop(target.addr);
  const host = mapping.family === 6 ? `[${addr}]` : addr;
  if (target.ports.from === target.ports.to) return `-j DNAT --to-destination ${value(`${host}:${target.ports.from}`)}`;
  if (target.ports.from === mapping.hostPorts.from) return `-j DNAT --to-destination ${value(addr)}`;
  return `-j DNAT --to-destination ${value(`${host}:${target.ports.from}-${target.ports.to}/${mapping.hostPorts.from}`)}`;
}

export function describeMapping(mapping: Mapping): string {
  return `${mapping.proto} ${formatEndpoint(mapping.hostIp ?? (mapping.family === 4 ? '0.0.0.0' : '::'), mapping.hostPorts)}`;
}

class TableBuilder {
  readonly chains: string[] = [];
  readonly rules: string[] = [];
  readonly jumps: Jump[] = [];
  private sequence = 0;
  constructor(readonly family: Family, readonly table: IptTable) {}
  chain(name: string): string {
    this.chains.push(value(name));
    return name;
  }
  /** A fresh numbered chain under `prefix`. */
  numbered(prefix: string): string {
    return this.chain(`${prefix}-${++this.sequence}`);
  }
  rule(chain: string, spec: string): void {
    this.rules.push(`-A ${chain} ${spec}`);
  }
  jump(chain: string, spec: string, first = false): void {
    this.jumps.push({ chain, spec, first });
  }
  /** Rules grouped chain by chain (in declaration order), as iptables-save lists them. */
  done(): TableRules {
    const order = new Map(this.chains.map((c, i) => [c, i]));
    const rules = this.rules.map((line, i) => ({ line, i, chain: order.get(ruleChain(line)) ?? -1 }));
    rules.sort((a, b) => a.chain - b.chain || a.i - b.i);
    return { family: this.family, table: this.table, chains: this.chains, rules: rules.map((r) => r.line), jumps: this.jumps };
  }
}

interface Leaf {
  ports: PortRange;
  rules: string[];
}

/**
 * Dispatch by port: sorted leaves are cut into at most `dispatchWidth` groups per chain, each
 * group behind one rule matching its port span, recursively. 10,000 mappings of a protocol
 * become three levels of ~22 rules: a packet walks ~35 rules on average instead of 5,000.
 * Host-IP bound mappings of different addresses may share ports, so spans can overlap: a
 * jump that finds nothing returns and the next span is tried, which stays correct.
 */
function dispatch(t: TableBuilder, chain: string, prefix: string, leaves: Leaf[], match: (range: PortRange) => string): void {
  if (leaves.length <= dispatchWidth) {
    for (const leaf of leaves) for (const spec of leaf.rules) t.rule(chain, spec);
    return;
  }
  const depth = Math.ceil(Math.log(leaves.length) / Math.log(dispatchWidth));
  const fanout = Math.ceil(leaves.length ** (1 / depth));
  const size = Math.ceil(leaves.length / fanout);
  for (let start = 0; start < leaves.length; start += size) {
    const group = leaves.slice(start, start + size);
    if (group.length === 1) {
      for (const spec of group[0]?.rules ?? []) t.rule(chain, spec);
      continue;
    }
    const span = { from: Math.min(...group.map((l) => l.ports.from)), to: Math.max(...group.map((l) => l.ports.to)) };
    const child = t.numbered(prefix);
    t.rule(chain, `${match(span)} -j ${child}`);
    dispatch(t, child, prefix, group, match);
  }
}

const byPort = (a: Leaf, b: Leaf): number => a.ports.from - b.ports.from || a.ports.to - b.ports.to;

interface Indexed {
  mapping: Mapping;
  index: number;
}

function natTable(model: Model, family: Family, mine: Indexed[]): TableRules {
  const t = new TableBuilder(family, 'nat');
  for (const name of [chains.prerouting, chains.output, chains.postrouting, chains.dnat]) t.chain(name);
  t.jump('PREROUTING', `-m addrtype --dst-type LOCAL -j ${chains.prerouting}`);
  // Like Docker: host processes reach published ports through any local address...
  t.jump('OUTPUT', `-m addrtype --dst-type LOCAL -j ${chains.output}`);
  t.jump('POSTROUTING', `-j ${chains.postrouting}`);

  const loopback = mine.filter(({ mapping }) => mapping.hostIp !== undefined && isLoopback(mapping.hostIp));
  const rest = mine.filter((m) => !loopback.includes(m));
  if (loopback.length) {
    t.chain(chains.loopback);
    for (const from of [chains.prerouting, chains.output]) t.rule(from, `-d 127.0.0.0/8 -j ${chains.loopback}`);
  }
  // ...but a wildcard mapping never captures loopback (Docker's `! -d 127.0.0.0/8`); only an explicit 127.x binding (above) does.
  t.rule(chains.output, family === 4 ? '-d 127.0.0.0/8 -j RETURN' : '-d ::1/128 -j RETURN');
  t.rule(chains.prerouting, `-j ${chains.dnat}`);
  t.rule(chains.output, `-j ${chains.dnat}`);

  const leafOf = ({ mapping, index }: Indexed): Leaf => {
    const bound = mapping.hostIp !== undefined ? `-d ${hostPrefix(mapping.hostIp, family)} ` : '';
    const head = `${bound}${dport(mapping.proto, mapping.hostPorts)} ${comment(`natctl mapping ${mapping.name} ${describeMapping(mapping)}`)}`;
    const [only] = mapping.targets;
    if (mapping.targets.length === 1 && only) return { ports: mapping.hostPorts, rules: [`${head} ${dnatTo(mapping, only)}`] };
    // Several targets: `statistic --mode nth` spreads new connections round-robin (only a connection's first packet reaches nat).
    const chain = t.chain(balanceChain(index));
    const count = mapping.targets.length;
    mapping.targets.forEach((target, i) => {
      const nth = i < count - 1 ? `-m statistic --mode nth --every ${count - i} --packet 0 ` : '';
      // DNAT to a port needs the protocol stated in its own rule.
      t.rule(chain, `-p ${mapping.proto} ${nth}${dnatTo(mapping, target)}`);
    });
    return { ports: mapping.hostPorts, rules: [`${head} -j ${chain}`] };
  };
  for (const item of loopback) for (const spec of leafOf(item).rules) t.rule(chains.loopback, spec);
  for (const proto of protos) {
    const leaves = rest.filter((m) => m.mapping.proto === proto).map(leafOf).sort(byPort);
    if (!leaves.length) continue;
    const chain = t.chain(dnatProtoChain(proto));
    t.rule(chains.dnat, `-p ${proto} -j ${chain}`);
    dispatch(t, chain, chain, leaves, (range) => dport(proto, range));
  }
  postrouting(t, model, family);
  return t.done();
}

function egressRule(network: Network, subnet: Cidr, egress: Egress): string | undefined {
  if (egress.kind === 'none') return undefined;
  const source = addrMatch('-s', subnet);
  if (egress.kind === 'masquerade') return `${source}! -o ${value(network.name)} -j MASQUERADE`;
  const to = snatTo(egress.to.from, egress.to.to);
  if (!egress.outInterface) return `${source}! -o ${value(network.name)} ${to}`;
  // iptables takes one -o per rule; leaving through the network's own interface never matches (nft: `oifname != NET oifname OUT`).
  if (egress.outInterface === network.name) return undefined;
  return `${source}-o ${value(egress.outInterface)} ${to}`;
}

function snatRule(rule: SnatRule): string {
  const out = rule.outInterface ? `-o ${value(rule.outInterface)} ` : '';
  const { action } = rule;
  const target = action.kind === 'masquerade' ? '-j MASQUERADE' : snatTo(action.to.from, action.to.to);
  return `${addrMatch('-s', rule.source)}${rule.destination ? addrMatch('-d', rule.destination) : ''}${out}${target}`;
}

function postrouting(t: TableBuilder, model: Model, family: Family): void {
  for (const network of model.networks) {
    if (!network.hairpin) continue;
    // Hairpin: a workload reaching a published port through the host address is sent back into its own network; masquerade so the reply returns through the host.
    for (const subnet of network.subnets.filter((s) => s.family === family)) {
      t.rule(chains.postrouting, `${addrMatch('-s', subnet)}-o ${value(network.name)} -m conntrack --ctstate DNAT -j MASQUERADE`);
    }
  }
  // Docker's per-mapping `-s C -d C -j MASQUERADE`: a target in no declared network reaching its
  // own published port through the host address would get its own address back as the source
  // (a martian, dropped); masqueraded, it answers the host.
  for (const target of undeclaredTargets(model).filter((t) => t.family === family)) {
    const host = hostPrefix(target.addr, family);
    t.rule(chains.postrouting, `-s ${host} -d ${host} -m conntrack --ctstate DNAT -j MASQUERADE`);
  }
  // A host process dialling 127.0.0.1 keeps that source after DNAT; rewrite it so the workload can answer.
  if (family === 4) for (const name of loopbackNetworks(model)) t.rule(chains.postrouting, `-s 127.0.0.0/8 -o ${value(name)} -j MASQUERADE`);
  // Explicit snat rules are more specific than a network's default egress: they go first.
  for (const rule of model.snat.filter((r) => r.family === family)) t.rule(chains.postrouting, snatRule(rule));
  for (const network of model.networks) {
    for (const subnet of network.subnets.filter((s) => s.family === family)) {
      const spec = egressRule(network, subnet, network.egress[family]);
      if (spec) t.rule(chains.postrouting, spec);
    }
  }
}

function blockRules(t: TableBuilder, model: Model, family: Family): void {
  model.block.forEach((rule: BlockRule, index) => {
    const chain = t.chain(blockRuleChain(index));
    for (const cidr of rule.except.filter((c) => c.family === family)) t.rule(chain, `-m conntrack --ctorigsrc ${ctAddr(cidr)} -j RETURN`);
    t.rule(chain, `${comment(`natctl block ${rule.name}`)} -j DROP`);
    // hostPort: the port the client dialled (the connection's original destination); targetPort: the port the workload answers from.
    // Only connections DNATed to a workload: the workloads' own outbound traffic to that port passes.
    const selector = rule.match === 'hostPort' ? `--ctstate DNAT --ctorigdstport ${ports(rule.ports)}` : `--ctstate DNAT --ctreplsrcport ${ports(rule.ports)}`;
    for (const proto of rule.protos) t.rule(chains.block, `-p ${proto} -m conntrack ${selector} -j ${chain}`);
    if (rule.match !== 'targetPort') return;
    // Connections routed straight to a workload of a `routed` network pass no DNAT: their
    // original destination is the workload itself, and the rule covers them too.
    for (const subnet of routedSubnets(model, family)) {
      for (const proto of rule.protos) t.rule(chains.block, `-p ${proto} -m conntrack --ctorigdst ${ctAddr(subnet)} --ctreplsrcport ${ports(rule.ports)} -j ${chain}`);
    }
  });
}

function filterTable(model: Model, family: Family, mine: Indexed[]): TableRules {
  const t = new TableBuilder(family, 'filter');
  t.chain(chains.forward);
  t.chain(chains.block);
  // First in FORWARD, like Docker's DOCKER-USER: operator block rules come before any accept.
  t.jump('FORWARD', `-j ${chains.forward}`, true);
  t.rule(chains.forward, `-j ${chains.block}`);
  blockRules(t, model, family);
  for (const network of model.networks) {
    if (network.hairpin) continue;
    // hairpin: false. With br_netfilter a sibling's connection DNATed back into its own bridge
    // is bridged to the target and the reply un-DNATed: hairpin works without masquerade.
    // Routed or bridged, it enters and leaves the network's interface with a DNAT: drop it
    // before the dispatch accepts it.
    t.rule(chains.forward, `-i ${value(network.name)} -o ${value(network.name)} -m conntrack --ctstate DNAT -j DROP`);
  }
  for (const proto of protos) {
    const leaves = mine.filter((m) => m.mapping.proto === proto).map(({ mapping, index }): Leaf => {
      const bound = mapping.hostIp !== undefined ? `--ctorigdst ${value(ntop(mapping.hostIp))} ` : '';
      const head = `-p ${proto} -m conntrack ${bound}--ctorigdstport ${ports(mapping.hostPorts)} ${comment(`natctl forward ${mapping.name}`)}`;
      if (!mapping.allow.length) return { ports: mapping.hostPorts, rules: [`${head} -j ACCEPT`] };
      // Judged on the connection's original source, so replies to an allowed client pass too.
      const chain = t.chain(allowChain(index));
      for (const cidr of mapping.allow) t.rule(chain, `-m conntrack --ctorigsrc ${ctAddr(cidr)} -j ACCEPT`);
      t.rule(chain, '-j DROP');
      return { ports: mapping.hostPorts, rules: [`${head} -j ${chain}`] };
    }).sort(byPort);
    if (!leaves.length) continue;
    const chain = t.chain(forwardProtoChain(proto));
    // Keyed on the connection's original destination port: both directions of a DNATed connection match.
    t.rule(chains.forward, `-p ${proto} -m conntrack --ctstate DNAT -j ${chain}`);
    dispatch(t, chain, chain, leaves, (range) => `-p ${proto} -m conntrack --ctorigdstport ${ports(range)}`);
  }
  for (const network of model.networks) {
    t.rule(chains.forward, `-i ${value(network.name)} -j ACCEPT`);
    t.rule(chains.forward, `-o ${value(network.name)} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  }
  return t.done();
}

function routedSubnets(model: Model, family: Family): Cidr[] {
  return model.networks.filter((n) => n.gatewayMode === 'routed').flatMap((n) => n.subnets.filter((s) => s.family === family));
}

/** Published targets (address, protocol, target ports, allow-list) of mappings whose target lies in `network`. */
function directTargets(model: Model, network: Network, family: Family): { addr: string; proto: Proto; ports: PortRange; allow: Cidr[] }[] {
  const out: { addr: string; proto: Proto; ports: PortRange; allow: Cidr[] }[] = [];
  for (const mapping of model.mappings.filter((m) => m.family === family)) {
    for (const target of mapping.targets) {
      const holder = model.networks.find((n) => n.name === mapping.network && n.subnets.some((s) => s.family === family)) ?? networkHolding(model, target.addr);
      if (holder === network) out.push({ addr: target.addr, proto: mapping.proto, ports: target.ports, allow: mapping.allow });
    }
  }
  return out;
}

/**
 * The guard, in mangle PREROUTING: after conntrack (so replies are told from new connections)
 * and before DNAT (so the destination is still the one the client chose), exactly where the
 * nft backend's guard chain runs (priority -150 is NF_IP_PRI_MANGLE). Rendered only when it
 * holds rules (docs/iptables.md).
 */
function mangleTable(model: Model, family: Family): TableRules | undefined {
  const t = new TableBuilder(family, 'mangle');
  t.chain(chains.guard);
  t.jump('PREROUTING', `-j ${chains.guard}`);
  let rules = 0;
  if (family === 4 && loopbackNetworks(model).length) {
    // route_localnet lets the kernel route 127/8 arriving on the network's interface: without
    // this drop (Docker's raw PREROUTING `-d 127.0.0.0/8 ! -i lo -j DROP`) a workload routing
    // 127.0.0.1 via its gateway would reach every host service bound to loopback.
    t.rule(chains.guard, `-d 127.0.0.0/8 ! -i lo ${comment('natctl loopback only from lo')} -j DROP`);
    rules++;
  }
  model.networks.forEach((network, index) => {
    if (network.gatewayMode === 'nat-unprotected') return;
    const subnets = network.subnets.filter((s) => s.family === family);
    if (!subnets.length) return;
    // Routed to a workload's own address from another interface (not to the host's address on
    // the network: that is LOCAL), and not a reply. Docker 28's gateway mode `nat` drops it;
    // `routed` lets it reach published targets only.
    let verdict = 'DROP';
    if (network.gatewayMode === 'routed') {
      verdict = t.chain(routedChain(index));
      for (const target of directTargets(model, network, family)) {
        const head = `-d ${hostPrefix(target.addr, family)} ${dport(target.proto, target.ports)}`;
        // The mapping's allow-list, judged as in the forward path: a direct route is no way around it.
        if (!target.allow.length) t.rule(verdict, `${head} -j ACCEPT`);
        for (const cidr of target.allow) t.rule(verdict, `${addrMatch('-s', cidr)}${head} -j ACCEPT`);
      }
      // Like Docker's routed mode: ICMP passes (path MTU, neighbour discovery, ping).
      t.rule(verdict, `-p ${family === 4 ? 'icmp' : 'ipv6-icmp'} -j ACCEPT`);
      t.rule(verdict, '-j DROP');
    }
    for (const subnet of subnets) {
      t.rule(chains.guard, `${addrMatch('-d', subnet)}! -i ${value(network.name)} -m addrtype ! --dst-type LOCAL -m conntrack --ctstate INVALID,NEW,UNTRACKED -j ${verdict}`);
      rules++;
    }
  });
  return rules ? t.done() : undefined;
}

export interface IptablesRender {
  tables: TableRules[];
}

/** The whole ruleset: nat and filter for IPv4, then IPv6. Throws ConfigError for what iptables cannot express. */
export function renderIptablesRules(model: Model): IptablesRender {
  const problems = iptablesProblems(model);
  if (problems.length) throw new ConfigError(problems);
  const indexed = model.mappings.map((mapping, index) => ({ mapping, index }));
  const tables: TableRules[] = [];
  for (const family of [4, 6] as const) {
    const mine = indexed.filter((m) => m.mapping.family === family);
    const mangle = mangleTable(model, family);
    tables.push(natTable(model, family, mine), filterTable(model, family, mine), ...(mangle ? [mangle] : []));
  }
  return { tables };
}

/** Restore input for one table as natctl loads it on a host that holds none of natctl's rules yet. */
export function tableText(rules: TableRules): string {
  return restoreText(rules, null) ?? '';
}

const heading = (rules: TableRules): string => `# ${tableKey(rules.family, rules.table)}: ${rules.family === 4 ? 'iptables' : 'ip6tables'}-legacy-restore --noflush`;

/** Everything, readable: each table's restore input under a comment naming its command (restore skips `#` lines). */
export function renderText(render: IptablesRender): string {
  return render.tables.map((rules) => `${heading(rules)}\n${tableText(rules)}`).join('');
}
