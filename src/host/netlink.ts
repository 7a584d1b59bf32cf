// rtnetlink and sock_diag through the `netlink` npm package (a small N-API addon), in this
// process's namespace or, through the natctl addon's withNetns, in a named one (netns.ts): the
// sockets are created inside it and keep it. Its setLink sends IFLA_PROTINFO without
// NLA_F_NESTED, which the kernel refuses (EINVAL), so hairpin mode is set with a hand-built
// RTM_SETLINK message.
import { createRequire } from 'node:module';
import type { Cidr, Family } from '../config/addr.js';
import { bigToIp } from '../config/addr.js';
import { CT_DELETE, CT_GET, type Flow, NETLINK_NETFILTER, ctDeleteRequest, ctDumpRequest, parseCtMessage } from './flows.js';
import type { Listener } from './listeners.js';
import type { AddressInfo, FlowTable, HostNetwork, LinkInfo, PortRef } from './network.js';
import { inNetns } from './netns.js';
import { NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, inetDiagRequest, parseInetDiag } from './sock-diag.js';

const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
const RTM_SETLINK = 19;
const IFLA_PROTINFO = 12;
const NLA_F_NESTED = 0x8000;
const IFLA_BRPORT_MODE = 4;

interface LinkMessage { data: { index: number; flags?: { up?: true } }; attrs: { ifname?: string; master?: number; protinfo?: Map<number, Buffer> } }
interface AddressMessage { data: { index: number; family: number; prefixlen: number }; attrs: { address?: Buffer; local?: Buffer } }
/** What the `netlink` package parses an RTM_NEWROUTE into (type as its name, table also as RTA_TABLE). */
export interface RouteMessage { data: { family: number; dstLen?: number; table?: number; type?: string | number }; attrs: { dst?: Buffer; table?: number } }
interface RtSocket {
  getLinks(data?: { family: number }): Promise<LinkMessage[]>;
  getAddresses(): Promise<AddressMessage[]>;
  getRoutes(data?: { family: number }): Promise<RouteMessage[]>;
  request(type: number, data: Uint8Array, options?: { flags?: number }): Promise<unknown>;
  socket: { close(): void };
}
interface RawMessage { type: number; data: Buffer }
interface PlainSocket {
  request(type: number, data: Uint8Array, options?: { flags?: number }): Promise<[RawMessage[], unknown]>;
  close(): void;
}
interface NetlinkModule {
  createRtNetlink: () => RtSocket;
  createNetlink: (protocol: number) => PlainSocket;
}

const NLM_F_DUMP = 0x300;

/**
 * Runs calls on one socket one after the other. The kernel runs one dump per netlink socket at
 * a time, and the `netlink` package reassembles one multipart answer at a time: two dumps in
 * flight on one socket interleave and fail ("Multipart message not terminated properly").
 */
function serial(): <T>(call: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(call: () => Promise<T>): Promise<T> => {
    const next = tail.then(call, call);
    tail = next.catch(() => undefined);
    return next;
  };
}
const RT_TABLE_LOCAL = 255;
const RTN_LOCAL = 2;

function bytesToIp(bytes: Buffer, family: Family): string {
  return bigToIp(BigInt(`0x${bytes.toString('hex')}`), family);
}

/** The nested IFLA_PROTINFO { IFLA_BRPORT_MODE = 1 (or 0) } message for one bridge port. */
export function hairpinMessage(index: number, on = true): Buffer {
  const message = Buffer.alloc(16 + 12);
  message.writeUInt8(AF_BRIDGE, 0); // struct ifinfomsg: family, pad, type, index, flags, change
  message.writeInt32LE(index, 4);
  message.writeUInt16LE(12, 16); // nlattr IFLA_PROTINFO | NLA_F_NESTED, length 4 + 8
  message.writeUInt16LE(IFLA_PROTINFO | NLA_F_NESTED, 18);
  message.writeUInt16LE(5, 20); // nested nlattr IFLA_BRPORT_MODE, u8, padded to 8
  message.writeUInt16LE(IFLA_BRPORT_MODE, 22);
  message.writeUInt8(on ? 1 : 0, 24);
  return message;
}

/**
 * The local routes (table local, type local: what `fib daddr type local` matches) among a
 * route dump, as prefixes.
 */
export function localRouteCidrs(routes: RouteMessage[]): Cidr[] {
  const out: Cidr[] = [];
  for (const route of routes) {
    const family: Family | undefined = route.data.family === AF_INET ? 4 : route.data.family === AF_INET6 ? 6 : undefined;
    const table = route.attrs.table ?? route.data.table;
    const local = route.data.type === 'LOCAL' || route.data.type === RTN_LOCAL;
    if (!family || table !== RT_TABLE_LOCAL || !local || !route.attrs.dst) continue;
    out.push({ family, addr: bytesToIp(route.attrs.dst, family), prefix: route.data.dstLen ?? (family === 4 ? 32 : 128) });
  }
  return out;
}

/**
 * rtnetlink (and, on first use, sock_diag) sockets in `netns` (undefined: this process's
 * namespace). Creating them there needs the natctl addon; without it this throws and the
 * caller takes another way (network.ts).
 */
export function netlinkHost(netns?: string): HostNetwork {
  const require = createRequire(import.meta.url);
  // Only the two modules used: the package's index also loads its nl80211, WireGuard and
  // generic-netlink code, tens of ms of a CLI run's start (the package has no exports map).
  const netlink: NetlinkModule = {
    createRtNetlink: (require('netlink/dist/rt/rt.js') as Pick<NetlinkModule, 'createRtNetlink'>).createRtNetlink,
    createNetlink: (require('netlink/dist/netlink.js') as Pick<NetlinkModule, 'createNetlink'>).createNetlink,
  };
  const rtSocket = inNetns(netns, () => netlink.createRtNetlink());
  const onRt = serial();
  const rt = {
    getLinks: (data?: { family: number }) => onRt(() => rtSocket.getLinks(data)),
    getAddresses: () => onRt(() => rtSocket.getAddresses()),
    getRoutes: (data: { family: number }) => onRt(() => rtSocket.getRoutes(data)),
    request: (type: number, data: Uint8Array) => onRt(() => rtSocket.request(type, data)),
  };
  let diag: PlainSocket | undefined;
  const onDiag = serial();
  const dump = async (family: 4 | 6, proto: 'tcp' | 'udp'): Promise<Listener[]> => {
    const socket = (diag ??= inNetns(netns, () => netlink.createNetlink(NETLINK_SOCK_DIAG)));
    const [messages] = await onDiag(() => socket.request(SOCK_DIAG_BY_FAMILY, inetDiagRequest(family, proto), { flags: NLM_F_DUMP }));
    return messages.flatMap((m) => {
      const listener = m.type === SOCK_DIAG_BY_FAMILY ? parseInetDiag(m.data, proto) : undefined;
      return listener ? [listener] : [];
    });
  };
  let ct: PlainSocket | undefined;
  const onCt = serial();
  const ctSocket = (): PlainSocket => (ct ??= inNetns(netns, () => netlink.createNetlink(NETLINK_NETFILTER)));
  const conntrack: FlowTable = {
    async list(family, proto): Promise<Flow[]> {
      const socket = ctSocket();
      const [messages] = await onCt(() => socket.request(CT_GET, ctDumpRequest(family), { flags: NLM_F_DUMP }));
      return messages.flatMap((m) => {
        const flow = parseCtMessage(m.data, proto);
        return flow ? [flow] : [];
      });
    },
    async remove(flow): Promise<void> {
      const socket = ctSocket();
      // ENOENT: the flow ended meanwhile (`conntrack -D` says "0 flow entries").
      await onCt(() => socket.request(CT_DELETE, ctDeleteRequest(flow))).catch((error: unknown) => {
        if (!/ENOENT/.test((error as Error).message)) throw error;
      });
    },
  };
  return {
    via: 'netlink',
    conntrack,
    async links(): Promise<LinkInfo[]> {
      const links = await rt.getLinks();
      const names = new Map(links.map((l) => [l.data.index, l.attrs.ifname ?? '']));
      const ports = await rt.getLinks({ family: AF_BRIDGE });
      const hairpin = new Map(ports.map((p) => [p.data.index, p.attrs.protinfo?.get(IFLA_BRPORT_MODE)?.[0] === 1]));
      return links.map((l) => {
        const master = l.attrs.master === undefined ? undefined : names.get(l.attrs.master);
        const info: LinkInfo = { index: l.data.index, name: l.attrs.ifname ?? '', up: l.data.flags?.up === true };
        if (master) info.master = master;
        if (hairpin.has(l.data.index)) info.hairpin = hairpin.get(l.data.index) === true;
        return info;
      });
    },
    async addresses(): Promise<AddressInfo[]> {
      const links = await rt.getLinks();
      const names = new Map(links.map((l) => [l.data.index, l.attrs.ifname ?? '']));
      const addresses = await rt.getAddresses();
      return addresses.flatMap((a) => {
        const family: Family | undefined = a.data.family === AF_INET ? 4 : a.data.family === AF_INET6 ? 6 : undefined;
        const bytes = a.attrs.local ?? a.attrs.address;
        if (!family || !bytes) return [];
        return [{ link: names.get(a.data.index) ?? '', family, address: bytesToIp(bytes, family), prefix: a.data.prefixlen }];
      });
    },
    async setHairpin(port: PortRef, on = true): Promise<void> {
      await rt.request(RTM_SETLINK, hairpinMessage(port.index, on));
    },
    async localRoutes(): Promise<Cidr[]> {
      // A kernel without IPv6 refuses the IPv6 dump: no local address of that family (as `ip -6`).
      const [v4, v6] = await Promise.all([rt.getRoutes({ family: AF_INET }), rt.getRoutes({ family: AF_INET6 }).catch(() => [])]);
      return localRouteCidrs([...v4, ...v6]);
    },
    async listeners(protos: ('tcp' | 'udp')[]): Promise<Listener[]> {
      // A kernel without IPv6 refuses the IPv6 dumps: nothing listens on IPv6 then.
      const dumps = protos.flatMap((proto) => [dump(4, proto), dump(6, proto).catch(() => [])]);
      return (await Promise.all(dumps)).flat();
    },
    close: () => {
      rtSocket.socket.close();
      diag?.close();
      ct?.close();
    },
  };
}
