// Host settings the ruleset depends on, applied inside the managed namespace (docs/ruleset.md):
//   - hairpin mode on the bridge ports of networks with hairpin (with br_netfilter a DNATed
//     frame is bridged back out of the port it came in on, docs/kernel-facts.md), off on those of networks with
//     `hairpin: false`, and on for the bridge holding a target that lies in no declared network;
//   - route_localnet where a loopback host IP is published, put back to its earlier value
//     once no loopback mapping needs it (the earlier value is kept in the state dir, so a later
//     run, or `flush`, can restore it).
import { constants, readFileSync, writeFileSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Runner } from '../backends/exec.js';
import { cidrContains } from '../config/addr.js';
import type { Model } from '../model/model.js';
import { type HostNetwork, type LinkInfo, openHostNetwork } from './network.js';
import { canEnterNetns, inNetns } from './netns.js';
import { hostView, undeclaredTargetsOf } from './view.js';

export interface PrepareOptions {
  /** Where the interfaces' route_localnet values from before natctl are kept. */
  stateDir?: string;
  /** An open host network to use (else one is opened and closed here). */
  host?: HostNetwork;
}

/** Returns warnings; never throws for a missing interface (workloads may come later). */
export async function prepareHost(runner: Runner, model: Model, options: PrepareOptions = {}): Promise<string[]> {
  const warnings: string[] = [];
  const missing = new Set<string>();
  // From the model's host view (view.ts): no pass over every mapping on each apply.
  const view = hostView(model);
  const undeclared = undeclaredTargetsOf(model, view);
  if (model.networks.length || undeclared.length) {
    const host = options.host ?? (await openHostNetwork(runner));
    try {
      await setHairpinModes(host, model, undeclared, missing, warnings);
    } finally {
      if (!options.host) host.close();
    }
  }
  const needed = [...view.loopback.keys()].filter((n) => !missing.has(n));
  const sysctl = runner.netns !== undefined && canEnterNetns() ? procSysctl(runner.netns) : commandSysctl(runner);
  warnings.push(...(await routeLocalnet(runner, needed, options.stateDir, sysctl)));
  return warnings;
}

async function setHairpinModes(host: HostNetwork, model: Model, undeclared: { addr: string }[], missing: Set<string>, warnings: string[]): Promise<void> {
  const links = await host.links();
  const set = async (network: string, ports: LinkInfo[], on: boolean): Promise<void> => {
    for (const port of ports.filter((l) => (l.hairpin === true) !== on)) {
      await host.setHairpin(port, on).catch((error: unknown) => warnings.push(`network ${network}: hairpin ${on ? 'on' : 'off'} on ${port.name} failed: ${(error as Error).message}`));
    }
  };
  for (const network of model.networks) {
    if (!links.some((l) => l.name === network.name)) {
      missing.add(network.name);
      if (network.hairpin) warnings.push(`network ${network.name}: interface not found; hairpin mode not set (re-apply once it exists)`);
      continue;
    }
    await set(network.name, links.filter((l) => l.master === network.name), network.hairpin);
  }
  if (!undeclared.length) return;
  // A target in no declared network: find the bridge whose address prefix holds it (the
  // connected route toward it). Its ports need hairpin mode for the target to reach its own
  // published port under br_netfilter, as Docker sets it on its bridges' ports.
  const addresses = await host.addresses();
  const bridges = new Set<string>();
  for (const target of undeclared) {
    for (const address of addresses) {
      // cidrContains compares the network bits only: the host's own address stands for its prefix.
      if (!cidrContains({ family: address.family, addr: address.address, prefix: address.prefix }, target.addr)) continue;
      if (model.networks.some((n) => n.name === address.link)) continue;
      if (links.some((l) => l.master === address.link)) bridges.add(address.link);
    }
  }
  for (const bridge of bridges) await set(bridge, links.filter((l) => l.master === bridge), true);
}

type Saved = Record<string, string>;
const savedFile = (stateDir: string): string => join(stateDir, 'route_localnet.json');

async function readSaved(stateDir: string | undefined): Promise<Saved> {
  if (!stateDir) return {};
  try {
    const parsed = JSON.parse(await readFile(savedFile(stateDir), 'utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string' && /^[01]$/.test(e[1])));
  } catch {
    return {};
  }
}

async function writeSaved(stateDir: string | undefined, saved: Saved): Promise<void> {
  if (!stateDir) return;
  const path = savedFile(stateDir);
  if (!Object.keys(saved).length) {
    await rm(path, { force: true });
    return;
  }
  const temp = `${path}.tmp-${process.pid}`;
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(saved)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

// Slashes, not dots: interface names may hold dots (eth0.100).
const key = (name: string): string => `net/ipv4/conf/${name}/route_localnet`;

/** Reads and writes the sysctls of one namespace; errors as text, in sysctl's words. */
export interface Sysctl {
  get(key: string): Promise<{ value: string } | { error: string }>;
  /** undefined when written. */
  set(key: string, value: string): Promise<string | undefined>;
}

/** The `sysctl` command, through the runner (inside its namespace). */
export function commandSysctl(runner: Runner): Sysctl {
  return {
    async get(name) {
      const result = await runner.run('sysctl', ['-n', name]);
      return result.exitCode === 0 ? { value: result.stdout.trim() } : { error: result.stderr.trim() };
    },
    async set(name, value) {
      const result = await runner.run('sysctl', ['-q', '-w', `${name}=${value}`]);
      return result.exitCode === 0 ? undefined : result.stderr.trim();
    },
  };
}

/**
 * /proc/sys read and written in process, by a thread inside `netns` (netns.ts): /proc/sys/net
 * shows the network namespace of the thread that opens the file, so no process is spawned.
 */
export function procSysctl(netns: string): Sysctl {
  const failure = (name: string, error: unknown): string =>
    (error as { code?: string }).code === 'ENOENT' ? `sysctl: cannot stat /proc/sys/${name}: No such file or directory` : `sysctl: /proc/sys/${name}: ${(error as Error).message}`;
  return {
    async get(name) {
      try {
        return { value: inNetns(netns, () => readFileSync(`/proc/sys/${name}`, 'utf8')).trim() };
      } catch (error) {
        return { error: failure(name, error) };
      }
    },
    async set(name, value) {
      try {
        inNetns(netns, () => writeFileSync(`/proc/sys/${name}`, value));
        return undefined;
      } catch (error) {
        return failure(name, error);
      }
    },
  };
}

/**
 * route_localnet=1 on `needed`; every other interface natctl set it on goes back to the value
 * it had before. The earlier value is written down before the sysctl changes, so a crash in
 * between leaves a record, never a change without one.
 */
export async function routeLocalnet(runner: Runner, needed: string[], stateDir: string | undefined, sysctl: Sysctl = commandSysctl(runner)): Promise<string[]> {
  const warnings: string[] = [];
  const saved = await readSaved(stateDir);
  let dirty = false;
  for (const name of needed) {
    const current = await sysctl.get(key(name));
    if ('error' in current) {
      warnings.push(`network ${name}: route_localnet not readable: ${current.error}`);
      continue;
    }
    if (current.value === '1') continue;
    if (saved[name] === undefined) {
      saved[name] = current.value;
      dirty = true;
      await writeSaved(stateDir, saved).catch((error: unknown) => warnings.push(`network ${name}: the earlier route_localnet value was not saved (${(error as Error).message})`));
    }
    const failed = await sysctl.set(key(name), '1');
    if (failed !== undefined) warnings.push(`network ${name}: route_localnet not set: ${failed}`);
  }
  for (const [name, before] of Object.entries(saved)) {
    if (needed.includes(name)) continue;
    const failed = await sysctl.set(key(name), before);
    // A vanished interface took its setting with it.
    if (failed !== undefined && !/No such file|cannot stat/i.test(failed)) {
      warnings.push(`network ${name}: route_localnet not put back to ${before}: ${failed}`);
      continue;
    }
    delete saved[name];
    dirty = true;
  }
  if (dirty) await writeSaved(stateDir, saved).catch((error: unknown) => warnings.push(`route_localnet record in ${stateDir ?? '?'} not written: ${(error as Error).message}`));
  return warnings;
}
