// rtnetlink through the `netlink` npm package (a small N-API addon), in this process's
// namespace. Its setLink sends IFLA_PROTINFO without NLA_F_NESTED, which the kernel refuses
// (EINVAL), so hairpin mode is set with a hand-built RTM_SETLINK message.
import { createRequire } from 'node:module';
import type { Family } from '../config/addr.js';
import { bigToIp } from '../config/addr.js';
import type { AddressInfo, HostNetwork, LinkInfo, PortRef } from './network.js';

const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
const RTM_SETLINK = 19;
const IFLA_PROTINFO = 12;
const NLA_F_NESTED = 0x8000;
const IFLA_BRPORT_MODE = 4;

interface LinkMessage { data: { index: number; flags?: { up?: true } }; attrs: { ifname?: string; master?: number; protinfo?: Map<number, Buffer> } }
interface AddressMessage { data: { index: number; family: number; prefixlen: number }; attrs: { address?: Buffer; local?: Buffer } }
interface RtSocket {
  getLinks(data?: { family: number }): Promise<LinkMessage[]>;
  getAddresses(): Promise<AddressMessage[]>;
  request(type: number, data: Uint8Array, options?: { flags?: number }): Promise<unknown>;
  socket: { close(): void };
}

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

export function netlinkHost(): HostNetwork {
  const require = createRequire(import.meta.url);
  const { createRtNetlink } = require('netlink') as { createRtNetlink: () => RtSocket };
  const rt = createRtNetlink();
  return {
    via: 'netlink',
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
    close: () => rt.socket.close(),
  };
}
