// Checks of a config against the host it is applied on (docs/troubleshooting.md, "Warnings"):
//   - a hostIp that is not a local address: `fib daddr type local` never matches it, so the
//     mapping can never be reached (nft accepts the ruleset all the same);
//   - a hostPort a host process already listens on: Docker would fail to bind it; with natctl
//     the DNAT wins and that process is no longer reachable on the port from outside.
// Warnings, not errors: addresses and processes come and go independently of the config.
// Read-only, inside the managed namespace: the local routes (rtnetlink) and the listening
// sockets (sock_diag), in process where the host network layer can (network.ts), else
// `ip route show table local` and `ss -l`; `ss -p` only once a clash is found.
import type { Runner } from '../backends/exec.js';
import { cidrContains, ipFamily } from '../config/addr.js';
import { formatPortRange } from '../config/ports.js';
import type { Mapping, Model } from '../model/model.js';
import { type Listener, parseListeners } from './listeners.js';
import { type HostNetwork, openHostNetwork } from './network.js';
import { type HostView, boundIp, hostView, publishes } from './view.js';

export { type Listener, parseListeners } from './listeners.js';

export interface LocalFinding {
  check: 'host ip' | 'port in use';
  mapping: string;
  message: string;
  fix: string;
}

/**
 * Listening sockets on the mappings' protocols. TCP and UDP come from `host` (sock_diag in
 * process, or ss); SCTP from `ss -S`, only when a mapping is SCTP. `withProcesses` runs ss -p
 * instead, which reads every process's fds (40-90 ms): only once a clash is found.
 */
async function listeners(runner: Runner, host: HostNetwork, view: HostView, withProcesses: boolean): Promise<Listener[]> {
  const protos = view.protos;
  const inet = (['tcp', 'udp'] as const).filter((p) => protos.has(p));
  const out: Listener[] = [];
  if (inet.length && !withProcesses) out.push(...(await host.listeners([...inet])));
  if (inet.length && withProcesses) {
    // Both types, so that ss prints the protocol column.
    const result = await runner.run('ss', ['-H', '-l', '-n', '-p', '-t', '-u']).catch(() => undefined);
    if (result?.exitCode === 0) out.push(...parseListeners(result.stdout));
  }
  if (protos.has('sctp')) {
    // Fails without the sctp module loaded: then nothing listens on SCTP.
    const result = await runner.run('ss', ['-H', '-l', '-n', ...(withProcesses ? ['-p'] : []), '-S']).catch(() => undefined);
    if (result?.exitCode === 0) out.push(...parseListeners(result.stdout, 'sctp'));
  }
  return out;
}

function listenerClashes(mapping: Mapping, listener: Listener): boolean {
  if (listener.proto !== mapping.proto || listener.port < mapping.hostPorts.from || listener.port > mapping.hostPorts.to) return false;
  const hostIp = boundIp(mapping);
  // A wildcard listener takes every address (an IPv6 wildcard usually IPv4 too).
  if (listener.addr === undefined) return true;
  if (hostIp !== undefined) return listener.addr === hostIp;
  return ipFamily(listener.addr) === mapping.family;
}

/** Warnings for `model` on the host behind `runner`; empty when everything can work. `host`: an open one to use (else one is opened and closed). */
export async function localFindings(runner: Runner, model: Model, host?: HostNetwork): Promise<LocalFinding[]> {
  if (!model.mappings.length) return [];
  if (!host) {
    const opened = await openHostNetwork(runner);
    try {
      return await localFindings(runner, model, opened);
    } finally {
      opened.close();
    }
  }
  const findings: LocalFinding[] = [];
  // The model's host view (view.ts): the mappings with a host IP and the published ports, kept
  // up to date by an apply's changes, so that this costs no pass over every mapping.
  const view = hostView(model);
  const bound = [...view.bound.values()];
  const [local, quick] = await Promise.all([bound.length ? host.localRoutes() : Promise.resolve([]), listeners(runner, host, view, false)]);
  if (bound.length) {
    const isLocal = new Map<string, boolean>();
    for (const mapping of bound) {
      const hostIp = mapping.hostIp as string;
      let known = isLocal.get(hostIp);
      if (known === undefined) isLocal.set(hostIp, (known = local.some((cidr) => cidrContains(cidr, hostIp))));
      if (known) continue;
      findings.push({
        check: 'host ip',
        mapping: mapping.name,
        message: `mapping ${mapping.name}: host IP ${hostIp} is not a local address of this host, so nothing can reach the mapping until it is`,
        fix: `add the address (ip addr add ${hostIp}/${ipFamily(hostIp) === 4 ? 32 : 128} dev IFACE) or fix the mapping's hostIp`,
      });
    }
  }
  // Every mapping is looked at only when a listener sits on a published port.
  const candidates = quick.filter((l) => publishes(view, l.proto, l.port));
  const clashes = candidates.length > 0 && model.mappings.some((m) => candidates.some((l) => listenerClashes(m, l)));
  if (!clashes) return findings;
  const open = await listeners(runner, host, view, true);
  for (const mapping of model.mappings) {
    const clash = open.find((l) => listenerClashes(mapping, l));
    if (!clash) continue;
    findings.push({
      check: 'port in use',
      mapping: mapping.name,
      message: `mapping ${mapping.name}: ${mapping.proto} port ${clash.port}${clash.addr ? ` on ${clash.addr}` : ''} is already listened on by ${clash.process ?? 'a host process'}; natctl's DNAT takes the port from it (Docker would refuse to publish it)`,
      fix: `publish another host port (${mapping.proto} ${formatPortRange(mapping.hostPorts)} now), or stop that process from listening on it`,
    });
  }
  return findings;
}

/** Apply's warnings. */
export async function localWarnings(runner: Runner, model: Model, host?: HostNetwork): Promise<string[]> {
  return (await localFindings(runner, model, host).catch((error: unknown) => [{ message: `host checks failed: ${(error as Error).message}` }])).map((f) => f.message);
}

/** Doctor's results (the shape of doctor's CheckResult). */
export async function localCheckResults(runner: Runner, model: Model): Promise<{ check: string; status: 'pass' | 'warn'; message: string; fix?: string }[]> {
  if (!model.mappings.length) return [];
  const findings = await localFindings(runner, model);
  if (!findings.length) return [{ check: 'host ports', status: 'pass', message: 'every host IP is local and no host process listens on a published port' }];
  return findings.map((f) => ({ check: f.check, status: 'warn', message: f.message, fix: f.fix }));
}
