// Checks of a config against the host it is applied on (docs/troubleshooting.md, "Warnings"):
//   - a hostIp that is not a local address: `fib daddr type local` never matches it, so the
//     mapping can never be reached (nft accepts the ruleset all the same);
//   - a hostPort a host process already listens on: Docker would fail to bind it; with natctl
//     the DNAT wins and that process is no longer reachable on the port from outside.
// Warnings, not errors: addresses and processes come and go independently of the config.
// Read-only: `ip route show table local` and `ss -l`, inside the managed namespace.
import type { Runner } from '../backends/exec.js';
import { type Cidr, cidrContains, ipFamily, parseCidr } from '../config/addr.js';
import { formatPortRange } from '../config/ports.js';
import type { Mapping, Model } from '../model/model.js';

export interface LocalFinding {
  check: 'host ip' | 'port in use';
  mapping: string;
  message: string;
  fix: string;
}

/** The kernel's local routes (what `fib daddr type local` matches), both families. */
async function localPrefixes(runner: Runner): Promise<Cidr[]> {
  const out: Cidr[] = [];
  for (const family of ['-4', '-6']) {
    const result = await runner.run('ip', ['-j', family, 'route', 'show', 'table', 'local', 'type', 'local']).catch(() => undefined);
    // An empty local table ("FIB table does not exist"): no local address of that family.
    if (!result || result.exitCode !== 0) continue;
    const routes = JSON.parse(result.stdout || '[]') as { dst?: string }[];
    for (const route of routes) {
      const cidr = route.dst ? parseCidr(route.dst) : undefined;
      if (cidr && typeof cidr !== 'string') out.push(cidr);
    }
  }
  return out;
}

interface Listener {
  proto: 'tcp' | 'udp' | 'sctp';
  /** undefined: a wildcard address (0.0.0.0, [::], *). */
  addr?: string;
  port: number;
  process?: string;
}

/** `ss -H -l -n` lines: `tcp LISTEN 0 4096 127.0.0.1:8080 0.0.0.0:* users:(("redis",pid=9,fd=6))`. */
export function parseListeners(text: string, proto?: Listener['proto']): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    // With -t -u the first column is the protocol; ss prints no such column for one type (-S).
    const offset = proto === undefined ? 1 : 0;
    const netid = proto ?? fields[0];
    const local = fields[3 + offset];
    if (!local || (netid !== 'tcp' && netid !== 'udp' && netid !== 'sctp')) continue;
    const colon = local.lastIndexOf(':');
    const port = Number(local.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(port) || port <= 0) continue;
    // `127.0.0.53%lo`, `[fe80::1]%eth0`: the zone goes, then the brackets.
    const host = local.slice(0, colon).replace(/%.*$/, '').replace(/^\[|\]$/g, '');
    const wildcard = host === '*' || host === '0.0.0.0' || host === '::';
    const owner = /users:\(\("([^"]+)",pid=(\d+)/.exec(line);
    const listener: Listener = { proto: netid, port };
    if (!wildcard && ipFamily(host)) listener.addr = host;
    if (owner) listener.process = `${owner[1]} (pid ${owner[2]})`;
    out.push(listener);
  }
  return out;
}

/** `withProcesses` adds ss -p, which reads every process's fds (40-90 ms): only once a clash is found. */
async function listeners(runner: Runner, model: Model, withProcesses: boolean): Promise<Listener[]> {
  const protos = new Set(model.mappings.map((m) => m.proto));
  const base = ['-H', '-l', '-n', ...(withProcesses ? ['-p'] : [])];
  const out: Listener[] = [];
  if (protos.has('tcp') || protos.has('udp')) {
    // Both types, so that ss prints the protocol column.
    const result = await runner.run('ss', [...base, '-t', '-u']).catch(() => undefined);
    if (result?.exitCode === 0) out.push(...parseListeners(result.stdout));
  }
  if (protos.has('sctp')) {
    // Fails without the sctp module loaded: then nothing listens on SCTP.
    const result = await runner.run('ss', [...base, '-S']).catch(() => undefined);
    if (result?.exitCode === 0) out.push(...parseListeners(result.stdout, 'sctp'));
  }
  return out;
}

const isUnspecified = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';

function listenerClashes(mapping: Mapping, listener: Listener): boolean {
  if (listener.proto !== mapping.proto || listener.port < mapping.hostPorts.from || listener.port > mapping.hostPorts.to) return false;
  const hostIp = mapping.hostIp !== undefined && !isUnspecified(mapping.hostIp) ? mapping.hostIp : undefined;
  // A wildcard listener takes every address (an IPv6 wildcard usually IPv4 too).
  if (listener.addr === undefined) return true;
  if (hostIp !== undefined) return listener.addr === hostIp;
  return ipFamily(listener.addr) === mapping.family;
}

/** Warnings for `model` on the host behind `runner`; empty when everything can work. */
export async function localFindings(runner: Runner, model: Model): Promise<LocalFinding[]> {
  if (!model.mappings.length) return [];
  const findings: LocalFinding[] = [];
  const bound = model.mappings.filter((m) => m.hostIp !== undefined && !isUnspecified(m.hostIp));
  const [local, quick] = await Promise.all([bound.length ? localPrefixes(runner) : Promise.resolve([]), listeners(runner, model, false)]);
  if (bound.length) {
    for (const mapping of bound) {
      const hostIp = mapping.hostIp as string;
      if (local.some((cidr) => cidrContains(cidr, hostIp))) continue;
      findings.push({
        check: 'host ip',
        mapping: mapping.name,
        message: `mapping ${mapping.name}: host IP ${hostIp} is not a local address of this host, so nothing can reach the mapping until it is`,
        fix: `add the address (ip addr add ${hostIp}/${ipFamily(hostIp) === 4 ? 32 : 128} dev IFACE) or fix the mapping's hostIp`,
      });
    }
  }
  const clashes = model.mappings.some((m) => quick.some((l) => listenerClashes(m, l)));
  const open = clashes ? await listeners(runner, model, true) : [];
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
export async function localWarnings(runner: Runner, model: Model): Promise<string[]> {
  return (await localFindings(runner, model).catch((error: unknown) => [{ message: `host checks failed: ${(error as Error).message}` }])).map((f) => f.message);
}

/** Doctor's results (the shape of doctor's CheckResult). */
export async function localCheckResults(runner: Runner, model: Model): Promise<{ check: string; status: 'pass' | 'warn'; message: string; fix?: string }[]> {
  if (!model.mappings.length) return [];
  const findings = await localFindings(runner, model);
  if (!findings.length) return [{ check: 'host ports', status: 'pass', message: 'every host IP is local and no host process listens on a published port' }];
  return findings.map((f) => ({ check: f.check, status: 'warn', message: f.message, fix: f.fix }));
}
