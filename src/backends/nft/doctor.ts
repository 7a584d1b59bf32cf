// natctl doctor, the nftables backend's part (issue 9: backends own their doctor checks): the
// nft binary, the kernel's support for natctl's features (`nft -c`, nothing committed), other
// tables that drop forwarded traffic or DNAT natctl's ports, and the in-process path. The
// backend-neutral host checks come from src/doctor/checks.ts.
import { isRoot } from '../exec.js';
import { withTempFile } from '../tempfile.js';
import { formatPortRange, rangesOverlap } from '../../config/ports.js';
import type { Model } from '../../model/model.js';
import { displayAddonPath, loadAddon, loadNativeBinding, nativeBindingStatus } from '../native.js';
import { NativeNftTransport } from './transport-native.js';
import { tableName } from './render.js';
import type { NftChain, NftListing, NftRule } from './json.js';
import type { Runner } from '../exec.js';
import { type CheckResult, hostChecks, result } from '../../doctor/checks.js';

interface DoctorContext {
  runner: Runner;
  nft: string;
  model?: Model;
}

async function nftBinary(ctx: DoctorContext): Promise<CheckResult> {
  const out = await ctx.runner.run(ctx.nft, ['--version']).catch(() => undefined);
  if (!out || out.exitCode !== 0) return result('nft', 'fail', `${ctx.nft} not found or not working`, 'apt-get install nftables (or point NATCTL_NFT at the nft binary)');
  return result('nft', 'pass', out.stdout.trim());
}

/** A throwaway batch with every kernel feature natctl's ruleset uses, checked with nft -c. */
const probeBatch = JSON.stringify({ nftables: [
  { add: { table: { family: 'inet', name: 'natctl_doctor' } } },
  { add: { chain: { family: 'inet', table: 'natctl_doctor', name: 'm' } } },
  { add: { map: { family: 'inet', table: 'natctl_doctor', name: 'd', type: ['ipv4_addr', 'inet_proto', 'inet_service'], map: 'verdict', flags: ['interval'], elem: [[{ concat: ['198.18.0.1', 'tcp', { range: [1, 2] }] }, { jump: { target: 'm' } }]] } } },
  { add: { chain: { family: 'inet', table: 'natctl_doctor', name: 'pre', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } } },
  { add: { chain: { family: 'inet', table: 'natctl_doctor', name: 'post', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } },
  { add: { rule: { family: 'inet', table: 'natctl_doctor', chain: 'pre', expr: [{ match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } }, { vmap: { key: { concat: [{ payload: { protocol: 'ip', field: 'daddr' } }, { meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] }, data: '@d' } }] } } },
  { add: { rule: { family: 'inet', table: 'natctl_doctor', chain: 'm', expr: [{ counter: null }, { vmap: { key: { numgen: { mode: 'inc', mod: 1, offset: 0 } }, data: { set: [[0, { accept: null }]] } } }] } } },
  { add: { rule: { family: 'inet', table: 'natctl_doctor', chain: 'pre', expr: [{ match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } }, { dnat: { family: 'ip', addr: '198.18.0.2', port: 80 } }] } } },
  { add: { rule: { family: 'inet', table: 'natctl_doctor', chain: 'post', expr: [{ match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } }, { masquerade: null }] } } },
] });

async function kernelSupport(ctx: DoctorContext): Promise<CheckResult> {
  if (!isRoot()) return result('kernel', 'warn', 'not checked: needs root', 'run natctl doctor as root');
  try {
    const out = await withTempFile('probe.json', probeBatch, (file) => ctx.runner.run(ctx.nft, ['-c', '-j', '-f', file]));
    if (out.exitCode === 0) return result('kernel', 'pass', 'nf_tables with NAT, fib, ct, numgen, masquerade and interval concatenations');
    return result('kernel', 'fail', `the kernel refuses natctl's features: ${out.stderr.split('\n').find((l) => /Error/.test(l)) ?? out.stderr.trim()}`, 'modprobe nf_tables nft_nat nft_fib_inet nft_ct nft_masq nft_numgen (kernel >= 5.6 for interval concatenations)');
  } catch (error) {
    return result('kernel', 'fail', (error as Error).message, 'apt-get install nftables');
  }
}


async function listRuleset(ctx: DoctorContext): Promise<{ chains: NftChain[]; rules: NftRule[]; tables: string[] } | undefined> {
  const out = await ctx.runner.run(ctx.nft, ['-j', 'list', 'ruleset']).catch(() => undefined);
  if (!out || out.exitCode !== 0) return undefined;
  const objects = (JSON.parse(out.stdout) as NftListing).nftables;
  return {
    chains: objects.flatMap((o) => ('chain' in o ? [o.chain] : [])),
    rules: objects.flatMap((o) => ('rule' in o ? [o.rule] : [])),
    tables: objects.flatMap((o) => ('table' in o ? [`${o.table.family} ${o.table.name}`] : [])),
  };
}

const isOurs = (table: string, family: string): boolean => table === tableName && family === 'inet';

async function forwardDrops(ctx: DoctorContext, ruleset: Awaited<ReturnType<typeof listRuleset>>): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const fix = 'accept natctl\'s traffic there before the drop, e.g. nft insert rule <family> <table> <chain> ct status dnat accept (for Docker: iptables -I DOCKER-USER -j RETURN is not enough; add ACCEPT rules for the published ports)';
  for (const chain of ruleset?.chains ?? []) {
    if (chain.hook !== 'forward' || isOurs(chain.table, chain.family)) continue;
    const where = `table ${chain.family} ${chain.table} chain ${chain.name}`;
    if (chain.policy === 'drop') out.push(result('forward policy', 'warn', `${where} has policy drop: forwarded traffic natctl publishes is dropped unless that chain accepts it`, fix));
    const drops = (ruleset?.rules ?? []).filter((r) => r.table === chain.table && r.family === chain.family && r.chain === chain.name && r.expr.some((e) => 'drop' in e || 'reject' in e));
    if (drops.length) out.push(result('forward rules', 'warn', `${where} has ${drops.length} drop/reject rule(s) that may drop natctl's forwarded traffic`, fix));
  }
  if (ruleset?.tables.some((t) => t.endsWith(' firewalld'))) {
    out.push(result('firewalld', 'warn', 'firewalld is active: its zones drop forwarded traffic not allowed by policy', 'firewall-cmd --zone=<zone> --add-forward (or a policy allowing the published ports)'));
  }
  const legacy = await ctx.runner.run('iptables-legacy', ['-S', 'FORWARD']).catch(() => undefined);
  if (legacy?.exitCode === 0 && legacy.stdout.includes('-P FORWARD DROP')) {
    out.push(result('forward policy', 'warn', 'iptables-legacy filter FORWARD has policy DROP (Docker sets this): natctl\'s forwarded traffic is dropped there', 'iptables-legacy -I FORWARD -m conntrack --ctstate DNAT,RELATED,ESTABLISHED -j ACCEPT'));
  }
  if (!out.length) out.push(result('forward path', 'pass', 'no other table drops forwarded traffic'));
  return out;
}

/** Ports matched (as `dport`) by DNAT rules of other tables. */
function foreignDnatPorts(ruleset: Awaited<ReturnType<typeof listRuleset>>): { where: string; from: number; to: number }[] {
  const found: { where: string; from: number; to: number }[] = [];
  for (const rule of ruleset?.rules ?? []) {
    // Native nft DNAT, or iptables-nft's DNAT target (listed as an xt compat expression).
    const dnats = rule.expr.some((e) => 'dnat' in e || (e.xt as { name?: string } | undefined)?.name === 'DNAT');
    if (isOurs(rule.table, rule.family) || !dnats) continue;
    for (const e of rule.expr) {
      const m = e.match as { left?: { payload?: { field?: string } }; right?: unknown } | undefined;
      if (m?.left?.payload?.field !== 'dport') continue;
      const values = typeof m.right === 'object' && m.right !== null && 'set' in m.right ? (m.right as { set: unknown[] }).set : [m.right];
      for (const v of values) {
        if (typeof v === 'number') found.push({ where: `table ${rule.family} ${rule.table} chain ${rule.chain}`, from: v, to: v });
        else if (typeof v === 'object' && v !== null && 'range' in v) {
          const [a, b] = (v as { range: [number, number] }).range;
          found.push({ where: `table ${rule.family} ${rule.table} chain ${rule.chain}`, from: a, to: b });
        }
      }
    }
  }
  return found;
}

async function foreignDnat(ctx: DoctorContext, ruleset: Awaited<ReturnType<typeof listRuleset>>): Promise<CheckResult[]> {
  if (!ctx.model?.mappings.length) return [];
  const foreign = foreignDnatPorts(ruleset);
  const legacy = await ctx.runner.run('iptables-legacy-save', ['-t', 'nat']).catch(() => undefined);
  for (const line of legacy?.exitCode === 0 ? legacy.stdout.split('\n') : []) {
    const port = /--dport (\d+)(?::(\d+))?/.exec(line);
    if (line.includes('-j DNAT') && port?.[1]) foreign.push({ where: `iptables-legacy nat ${line.split(' ')[1] ?? ''}`, from: Number(port[1]), to: Number(port[2] ?? port[1]) });
  }
  const out: CheckResult[] = [];
  for (const mapping of ctx.model.mappings) {
    for (const other of foreign) {
      if (rangesOverlap(mapping.hostPorts, other)) {
        out.push(result('port clash', 'warn', `host port ${formatPortRange(other)} of mapping ${mapping.name} is already DNATed by ${other.where}`, 'remove that rule, or publish on another port: whichever DNAT runs first wins'));
      }
    }
  }
  if (!out.length) out.push(result('port clash', 'pass', 'no other table DNATs natctl\'s host ports'));
  return out;
}

/** The in-process nftables path (docs/performance.md): loaded, and working in this namespace? */
async function native(ctx: DoctorContext): Promise<CheckResult> {
  const status = nativeBindingStatus();
  const binding = loadNativeBinding();
  if (!status.loaded || !binding) {
    if (status.loaded || status.disabled) {
      const netlink = process.env.NATCTL_NETLINK !== '0' && loadAddon()?.withNetns ? '; netlink work (marker and key lookups, host settings) still runs in process through the addon' : '';
      return result('native binding', 'info', `disabled by NATCTL_NATIVE=0; natctl spawns the nft binary for batches and listings${netlink}`);
    }
    return result('native binding', 'warn', `the in-process libnftables addon is not loaded (${status.reason}); natctl spawns the nft binary instead, which costs a process per call`,
      'apt-get install libnftables-dev, then rebuild the addon: npm rebuild natctl (in a checkout: npm run build:native)');
  }
  const where = `${displayAddonPath(status.path)}, libnftables ${status.version}`;
  if (process.env.NATCTL_NFT !== undefined) return result('native binding', 'info', `loaded (${where}), but NATCTL_NFT is set, so natctl spawns ${process.env.NATCTL_NFT}`);
  if (isRoot()) {
    // One harmless listing through the addon, in the namespace natctl acts in (a thread enters it).
    const probe = await new NativeNftTransport(binding, ctx.runner.netns).list(['tables']).catch((error: Error) => ({ exitCode: 1, stderr: error.message }));
    if (probe.exitCode !== 0) {
      return result('native binding', 'warn', `loaded (${where}) but it cannot reach nf_tables: ${probe.stderr.trim().split('\n')[0] ?? ''}`, 'run natctl doctor as root; check the kernel check above');
    }
  }
  return result('native binding', 'pass', `in-process libnftables addon loaded (${where}); natctl's batches run in process${ctx.runner.netns ? ` in netns ${ctx.runner.netns}` : ''}`);
}


/** Every check `natctl doctor` runs for the nftables backend (NftBackend.doctor). */
export async function nftDoctor(ctx: DoctorContext): Promise<CheckResult[]> {
  const results: CheckResult[] = [await nftBinary(ctx), await kernelSupport(ctx), ...(await hostChecks(ctx))];
  const ruleset = await listRuleset(ctx);
  results.push(...(await forwardDrops(ctx, ruleset)), ...(await foreignDnat(ctx, ruleset)), await native(ctx));
  return results;
}
