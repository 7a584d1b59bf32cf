// Host settings the ruleset depends on, applied inside the managed namespace: hairpin mode
// on the bridge ports of networks with hairpin (a DNATed frame must be allowed back out of
// the port it came in on, DESIGN §6), and route_localnet where a loopback host IP is published.
import type { Runner } from '../backends/exec.js';
import type { Model } from '../model/model.js';

export async function bridgePorts(runner: Runner, bridge: string): Promise<string[] | undefined> {
  const result = await runner.run('ip', ['-j', 'link', 'show', 'master', bridge]);
  if (result.exitCode !== 0) return undefined;
  const links = JSON.parse(result.stdout || '[]') as { ifname: string }[];
  return links.map((l) => l.ifname);
}

/** Returns warnings; never throws for a missing interface (workloads may come later). */
export async function prepareHost(runner: Runner, model: Model): Promise<string[]> {
  const warnings: string[] = [];
  for (const network of model.networks) {
    if (!network.hairpin) continue;
    const ports = await bridgePorts(runner, network.name);
    if (ports === undefined) {
      warnings.push(`network ${network.name}: interface not found; hairpin mode not set (re-apply once it exists)`);
      continue;
    }
    for (const port of ports) {
      const result = await runner.run('bridge', ['link', 'set', 'dev', port, 'hairpin', 'on']);
      if (result.exitCode !== 0) warnings.push(`network ${network.name}: hairpin on ${port} failed: ${result.stderr.trim()}`);
    }
  }
  const loopback = new Set(model.mappings.filter((m) => m.hostIp?.startsWith('127.') && m.network).map((m) => m.network as string));
  for (const name of loopback) {
    const result = await runner.run('sysctl', ['-q', '-w', `net/ipv4/conf/${name}/route_localnet=1`]);
    if (result.exitCode !== 0) warnings.push(`network ${name}: route_localnet not set: ${result.stderr.trim()}`);
  }
  return warnings;
}
