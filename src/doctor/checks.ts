// natctl doctor, the backend-neutral part: each check looks at one thing every backend's
// ruleset depends on (forwarding, bridges, interfaces, hairpin, local addresses and ports) and
// says how to fix it. Checks only read. A backend's own checks (its tools, the kernel's
// support, other rules that race it) live with the backend (Backend.doctor), which runs these
// too: src/backends/nft/doctor.ts, src/backends/iptables/doctor.ts.
import type { Runner } from '../backends/exec.js';
import { cidrContains, cidrText } from '../config/addr.js';
import type { Model } from '../model/model.js';
import { type HostNetwork, openHostNetwork } from '../host/network.js';
import { localCheckResults } from '../host/local-checks.js';

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'info';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  message: string;
  fix?: string;
}

export interface DoctorContext {
  runner: Runner;
  /** The config to check against (from -f, else the last generation); undefined: host-only checks. */
  model?: Model;
}

export const result = (check: string, status: CheckStatus, message: string, fix?: string): CheckResult => (fix ? { check, status, message, fix } : { check, status, message });

async function sysctl(runner: Runner, key: string): Promise<string | undefined> {
  const out = await runner.run('sysctl', ['-n', key]).catch(() => undefined);
  return out && out.exitCode === 0 ? out.stdout.trim() : undefined;
}

async function iptablesVariants(ctx: DoctorContext): Promise<CheckResult> {
  const version = async (command: string): Promise<string | undefined> => {
    const out = await ctx.runner.run(command, ['--version']).catch(() => undefined);
    return out && out.exitCode === 0 ? out.stdout.trim() : undefined;
  };
  const [plain, legacy, nft] = await Promise.all([version('iptables'), version('iptables-legacy'), version('iptables-nft')]);
  const present = [legacy && 'iptables-legacy', nft && 'iptables-nft'].filter(Boolean).join(', ') || 'none';
  const which = plain === undefined ? 'no iptables command' : plain.includes('legacy') ? 'iptables is iptables-legacy' : plain.includes('nf_tables') ? 'iptables is iptables-nft' : `iptables: ${plain}`;
  return result('iptables', 'info', `${which}; installed: ${present}`);
}

function needsFamily(model: Model | undefined, family: 4 | 6): boolean {
  if (!model) return false;
  return model.mappings.some((m) => m.family === family) || model.networks.some((n) => n.subnets.some((s) => s.family === family)) || model.snat.some((s) => s.family === family);
}

async function forwarding(ctx: DoctorContext): Promise<CheckResult[]> {
  const v4 = await sysctl(ctx.runner, 'net.ipv4.ip_forward');
  const v6 = await sysctl(ctx.runner, 'net.ipv6.conf.all.forwarding');
  const out: CheckResult[] = [];
  const severity = (family: 4 | 6): CheckStatus => (needsFamily(ctx.model, family) ? 'fail' : ctx.model ? 'info' : 'warn');
  out.push(v4 === '1'
    ? result('ip_forward', 'pass', 'IPv4 forwarding is on')
    : result('ip_forward', severity(4), 'IPv4 forwarding is off: DNATed and egress traffic is not forwarded', 'sysctl -w net.ipv4.ip_forward=1 (persist it in /etc/sysctl.d/)'));
  out.push(v6 === '1'
    ? result('ip6_forward', 'pass', 'IPv6 forwarding is on')
    : result('ip6_forward', severity(6), 'IPv6 forwarding is off', 'sysctl -w net.ipv6.conf.all.forwarding=1 (persist it in /etc/sysctl.d/)'));
  return out;
}

async function brNetfilter(ctx: DoctorContext): Promise<CheckResult> {
  const value = await sysctl(ctx.runner, 'net.bridge.bridge-nf-call-iptables');
  if (value === undefined) return result('br_netfilter', 'info', 'br_netfilter is not loaded: bridged frames bypass netfilter; hairpin traffic is routed by the host');
  return result('br_netfilter', 'info', `br_netfilter is loaded, bridge-nf-call-iptables=${value}${value === '1' ? ': DNATed frames may be bridged back out of their port, so bridge ports need hairpin mode' : ''}`);
}

async function interfaces(ctx: DoctorContext, host: HostNetwork): Promise<CheckResult[]> {
  if (!ctx.model?.networks.length) return [];
  const links = await host.links();
  const addresses = await host.addresses();
  const out: CheckResult[] = [];
  for (const network of ctx.model.networks) {
    const link = links.find((l) => l.name === network.name);
    if (!link) {
      out.push(result(`network ${network.name}`, 'fail', `interface ${network.name} does not exist`, `create it (e.g. ip link add ${network.name} type bridge) or fix the network's name`));
      continue;
    }
    if (!link.up) out.push(result(`network ${network.name}`, 'warn', `interface ${network.name} is down`, `ip link set ${network.name} up`));
    for (const subnet of network.subnets) {
      const held = addresses.some((a) => a.link === network.name && cidrContains(subnet, a.address));
      out.push(held
        ? result(`network ${network.name}`, 'pass', `${network.name} holds an address in ${cidrText(subnet)}`)
        : result(`network ${network.name}`, 'warn', `${network.name} holds no address in ${cidrText(subnet)}: workloads have no gateway there`, `ip addr add <gateway>/${subnet.prefix} dev ${network.name}`));
    }
    if (network.hairpin) {
      const ports = links.filter((l) => l.master === network.name);
      const off = ports.filter((p) => p.hairpin !== true).map((p) => p.name);
      if (off.length) out.push(result(`hairpin ${network.name}`, 'warn', `hairpin mode is off on ${off.join(', ')}: those workloads cannot reach their own published ports through the host address`, `natctl apply turns it on; or: bridge link set dev ${off[0]} hairpin on`));
      else if (ports.length) out.push(result(`hairpin ${network.name}`, 'pass', `hairpin mode is on for all ${ports.length} port(s)`));
    } else {
      const on = links.filter((l) => l.master === network.name && l.hairpin === true).map((p) => p.name);
      if (on.length) out.push(result(`hairpin ${network.name}`, 'warn', `hairpin mode is on on ${on.join(', ')} although the network says hairpin: false`, `natctl apply turns it off; or: bridge link set dev ${on[0]} hairpin off`));
    }
  }
  return out;
}


/** The checks that hold for every backend: iptables variants, forwarding, br_netfilter, the networks' interfaces, hostIp and hostPort. */
export async function hostChecks(ctx: DoctorContext): Promise<CheckResult[]> {
  const results: CheckResult[] = [await iptablesVariants(ctx), ...(await forwarding(ctx)), await brNetfilter(ctx)];
  const host = await openHostNetwork(ctx.runner);
  try {
    results.push(...(await interfaces(ctx, host)));
  } finally {
    host.close();
  }
  if (ctx.model) results.push(...(await localCheckResults(ctx.runner, ctx.model)));
  return results;
}
