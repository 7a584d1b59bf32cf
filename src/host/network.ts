// What natctl needs to know about (and set on) the host's interfaces: links, addresses,
// bridge ports and their hairpin mode, local routes and listening sockets. One interface,
// three ways to get there:
//   - in-process rtnetlink and sock_diag through the `netlink` npm package, in this process's
//     namespace or, for --netns, with sockets created inside the namespace by the natctl
//     addon's withNetns (netns.ts): no process is spawned;
//   - without the addon (not built, NATCTL_NATIVE=0) in a namespace: the same rtnetlink code in
//     a worker started inside it (`ip netns exec NS node ...`), one process per call, since a
//     netlink socket belongs to the namespace it was opened in; local routes and listeners
//     then come from `ip route` and `ss`;
//   - `ip -j` / `bridge` / `ss` commands, when the netlink package cannot load (or NATCTL_NETLINK=0),
//     and for good once a netlink call fails.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runner } from '../backends/exec.js';
import { type Cidr, type Family, parseCidr } from '../config/addr.js';
import type { Flow } from './flows.js';
import { type Listener, parseListeners } from './listeners.js';
import { canEnterNetns } from './netns.js';

export interface LinkInfo {
  index: number;
  name: string;
  /** Name of the bridge (or other master) this link is enslaved to. */
  master?: string;
  up: boolean;
  /** For bridge ports: whether hairpin mode is on. */
  hairpin?: boolean;
}

export interface AddressInfo {
  link: string;
  family: Family;
  address: string;
  prefix: number;
}

/** A link as links() returned it: netlink addresses it by index, iproute2 by name. */
export type PortRef = Pick<LinkInfo, 'index' | 'name'>;

export interface HostNetwork {
  readonly via: 'netlink' | 'netlink-worker' | 'ip';
  links(): Promise<LinkInfo[]>;
  addresses(): Promise<AddressInfo[]>;
  /** Turns hairpin mode on (default) or off for a bridge port, as returned by links(). */
  setHairpin(port: PortRef, on?: boolean): Promise<void>;
  /** The kernel's local routes (table local, type local: what `fib daddr type local` matches), both families. */
  localRoutes(): Promise<Cidr[]>;
  /** Listening TCP and unconnected UDP sockets (`ss -l -t -u`), both families, without their processes. */
  listeners(protos: ('tcp' | 'udp')[]): Promise<Listener[]>;
  /** Conntrack in process (ctnetlink), where this way has it; else conntrack.ts runs the `conntrack` command. */
  readonly conntrack?: FlowTable;
  close(): void;
}

export interface FlowTable {
  /** The flows of one family and protocol. */
  list(family: 4 | 6, proto: Flow['proto']): Promise<Flow[]>;
  /** Deletes one flow by its original tuple; a flow that ended meanwhile is no error. */
  remove(flow: Flow): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
// Loaded from src/ (tests run TypeScript directly), the worker still runs from the build.
const workerScript = import.meta.url.endsWith('.ts') ? join(here, '../../dist/host/netlink-worker.js') : join(here, 'netlink-worker.js');

/** Runs the netlink worker inside the runner's namespace; one process per call. Routes and listeners: iproute2. */
function workerHost(runner: Runner): HostNetwork {
  const commands = ipHost(runner);
  const call = async <T>(op: string, arg?: string): Promise<T> => {
    const result = await runner.run(process.execPath, [workerScript, op, ...(arg === undefined ? [] : [arg])]);
    if (result.exitCode !== 0) throw new Error(result.stderr.trim() || `netlink worker ${op} failed`);
    return JSON.parse(result.stdout) as T;
  };
  return {
    via: 'netlink-worker',
    links: () => call<LinkInfo[]>('links'),
    addresses: () => call<AddressInfo[]>('addresses'),
    setHairpin: async (port, on = true) => void (await call(on ? 'hairpin' : 'hairpin-off', `${port.index}:${port.name}`)),
    localRoutes: () => commands.localRoutes(),
    listeners: (protos) => commands.listeners(protos),
    close: () => undefined,
  };
}

interface IpLink { ifindex: number; ifname: string; master?: string; flags?: string[]; operstate?: string }
interface IpAddr { ifname: string; addr_info: { family: string; local: string; prefixlen: number }[] }
interface BridgeLink { ifname: string; hairpin?: boolean }

/** The fallback: iproute2's JSON output. */
export function ipHost(runner: Runner): HostNetwork {
  const json = async <T>(command: string, args: string[]): Promise<T> => {
    const result = await runner.run(command, args);
    if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr.trim()}`);
    return JSON.parse(result.stdout || '[]') as T;
  };
  return {
    via: 'ip',
    async links() {
      const links = await json<IpLink[]>('ip', ['-j', 'link', 'show']);
      const ports = await json<BridgeLink[]>('bridge', ['-j', '-d', 'link', 'show']).catch(() => [] as BridgeLink[]);
      const hairpin = new Map(ports.map((p) => [p.ifname, p.hairpin === true]));
      return links.map((l) => ({
        index: l.ifindex,
        name: l.ifname,
        up: (l.flags ?? []).includes('UP'),
        ...(l.master ? { master: l.master } : {}),
        ...(hairpin.has(l.ifname) ? { hairpin: hairpin.get(l.ifname) } : {}),
      }));
    },
    async addresses() {
      const links = await json<IpAddr[]>('ip', ['-j', 'addr', 'show']);
      return links.flatMap((l) => l.addr_info.map((a) => ({ link: l.ifname, family: (a.family === 'inet6' ? 6 : 4) as Family, address: a.local, prefix: a.prefixlen })));
    },
    async setHairpin(port, on = true) {
      const mode = on ? 'on' : 'off';
      const result = await runner.run('bridge', ['link', 'set', 'dev', port.name, 'hairpin', mode]);
      if (result.exitCode !== 0) throw new Error(`bridge link set dev ${port.name} hairpin ${mode}: ${result.stderr.trim()}`);
    },
    async localRoutes() {
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
    },
    async listeners(protos) {
      if (!protos.length) return [];
      // Both types, so that ss prints the protocol column; a failing ss: nothing found.
      const result = await runner.run('ss', ['-H', '-l', '-n', '-t', '-u']).catch(() => undefined);
      return result?.exitCode === 0 ? parseListeners(result.stdout).filter((l) => (protos as string[]).includes(l.proto)) : [];
    },
    close: () => undefined,
  };
}

/** Uses `primary`, switching to `fallback` for good after a call that fails to run. */
function withFallback(primary: HostNetwork, fallback: HostNetwork): HostNetwork {
  let current = primary;
  const attempt = async <T>(call: (host: HostNetwork) => Promise<T>): Promise<T> => {
    if (current === fallback) return call(fallback);
    try {
      return await call(current);
    } catch {
      current = fallback;
      return call(fallback);
    }
  };
  return {
    get via() {
      return current.via;
    },
    get conntrack() {
      return current.conntrack;
    },
    links: () => attempt((h) => h.links()),
    addresses: () => attempt((h) => h.addresses()),
    setHairpin: (port, on) => attempt((h) => h.setHairpin(port, on)),
    localRoutes: () => attempt((h) => h.localRoutes()),
    listeners: (protos) => attempt((h) => h.listeners(protos)),
    close: () => {
      primary.close();
      fallback.close();
    },
  };
}

/**
 * Picks the best way available: netlink in process (sockets opened in the namespace by the
 * addon), else the netlink worker in the namespace, else `ip`. Close it when done: it holds
 * netlink sockets.
 */
export async function openHostNetwork(runner: Runner): Promise<HostNetwork> {
  if (process.env.NATCTL_NETLINK !== '0') {
    try {
      if (runner.netns === undefined || canEnterNetns()) {
        const { netlinkHost } = await import('./netlink.js');
        return withFallback(netlinkHost(runner.netns), ipHost(runner));
      }
      // One spawn per call: the worker is probed by its first real call, falling back then.
      return withFallback(workerHost(runner), ipHost(runner));
    } catch {
      // the addon did not load (or the worker could not start): iproute2 does the same job
    }
  }
  return ipHost(runner);
}
