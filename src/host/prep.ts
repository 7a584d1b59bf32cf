// Host settings the ruleset depends on, applied inside the managed namespace: hairpin mode
// on the bridge ports of networks with hairpin (a DNATed frame must be allowed back out of
// the port it came in on, docs/kernel-facts.md), and route_localnet where a loopback host IP is published.
import type { Runner } from '../backends/exec.js';
import { type Model, loopbackNetworks } from '../model/model.js';
import { openHostNetwork } from './network.js';

/** Returns warnings; never throws for a missing interface (workloads may come later). */
export async function prepareHost(runner: Runner, model: Model): Promise<string[]> {
  const warnings: string[] = [];
  const missing = new Set<string>();
  const hairpinNetworks = model.networks.filter((n) => n.hairpin);
  if (hairpinNetworks.length) {
    const host = await openHostNetwork(runner);
    try {
      const links = await host.links();
      for (const network of hairpinNetworks) {
        if (!links.some((l) => l.name === network.name)) {
          missing.add(network.name);
          warnings.push(`network ${network.name}: interface not found; hairpin mode not set (re-apply once it exists)`);
          continue;
        }
        for (const port of links.filter((l) => l.master === network.name && l.hairpin !== true)) {
          await host.setHairpin(port).catch((error: unknown) => warnings.push(`network ${network.name}: hairpin on ${port.name} failed: ${(error as Error).message}`));
        }
      }
    } finally {
      host.close();
    }
  }
  for (const name of loopbackNetworks(model).filter((n) => !missing.has(n))) {
    const result = await runner.run('sysctl', ['-q', '-w', `net/ipv4/conf/${name}/route_localnet=1`]);
    if (result.exitCode !== 0) warnings.push(`network ${name}: route_localnet not set: ${result.stderr.trim()}`);
  }
  return warnings;
}
