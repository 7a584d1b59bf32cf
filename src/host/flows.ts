// Conntrack entries, read and deleted two ways (conntrack.ts decides which to delete):
//   - in process over ctnetlink (NETLINK_NETFILTER, subsystem CTNETLINK): one IPCTNL_MSG_CT_GET
//     dump per family, one IPCTNL_MSG_CT_DELETE per flow by its original tuple (netlink.ts);
//   - the `conntrack` command: `-L` and `-D` (network.ts, the fallback).
// This file holds the messages (linux/netfilter/nfnetlink_conntrack.h) and the command's
// arguments and output.
import { bigToIp, canonicalIp, ipToBig } from '../config/addr.js';

export type DatagramProto = 'udp' | 'sctp';

/** One conntrack entry: its original tuple and the source of its reply tuple. */
export interface Flow {
  family: 4 | 6;
  proto: DatagramProto;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  replySrc: string;
}

export const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
export const CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | 1;
export const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | 2;
const AF_INET = 2;
const AF_INET6 = 10;
const NLA_F_NESTED = 0x8000;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const protoNumber: Record<DatagramProto, number> = { udp: 17, sctp: 132 };

/** struct nfgenmsg: family, version (NFNETLINK_V0), res_id (0). */
const nfgenmsg = (family: 4 | 6): Buffer => Buffer.from([family === 4 ? AF_INET : AF_INET6, 0, 0, 0]);

function attr(type: number, payload: Buffer, nested = false): Buffer {
  const length = 4 + payload.length;
  const out = Buffer.alloc((length + 3) & ~3);
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type | (nested ? NLA_F_NESTED : 0), 2);
  payload.copy(out, 4);
  return out;
}

/** The attributes of a netlink payload, by type (nested and byte-order flags masked off). */
function attrs(data: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let offset = 0;
  while (offset + 4 <= data.length) {
    const length = data.readUInt16LE(offset);
    if (length < 4 || offset + length > data.length) break;
    out.set(data.readUInt16LE(offset + 2) & 0x3fff, data.subarray(offset + 4, offset + length));
    offset += (length + 3) & ~3;
  }
  return out;
}

const ipBytes = (ip: string, family: 4 | 6): Buffer => Buffer.from(ipToBig(ip).toString(16).padStart(family === 4 ? 8 : 32, '0'), 'hex');

const bytesToIp = (bytes: Buffer, family: 4 | 6): string => bigToIp(BigInt(`0x${bytes.toString('hex')}`), family);

/** The nested CTA_TUPLE_* of one direction. */
function tuple(type: number, flow: Pick<Flow, 'family' | 'proto' | 'src' | 'dst' | 'sport' | 'dport'>): Buffer {
  const [srcType, dstType] = flow.family === 4 ? [CTA_IP_V4_SRC, CTA_IP_V4_DST] : [CTA_IP_V6_SRC, CTA_IP_V6_DST];
  const ip = attr(CTA_TUPLE_IP, Buffer.concat([attr(srcType, ipBytes(flow.src, flow.family)), attr(dstType, ipBytes(flow.dst, flow.family))]), true);
  const port = (value: number): Buffer => Buffer.from([value >> 8, value & 0xff]);
  const proto = attr(CTA_TUPLE_PROTO, Buffer.concat([attr(CTA_PROTO_NUM, Buffer.from([protoNumber[flow.proto]])), attr(CTA_PROTO_SRC_PORT, port(flow.sport)), attr(CTA_PROTO_DST_PORT, port(flow.dport))]), true);
  return attr(type, Buffer.concat([ip, proto]), true);
}

/** The IPCTNL_MSG_CT_GET dump request of one family (every protocol: filtered on reading). */
export function ctDumpRequest(family: 4 | 6): Buffer {
  return nfgenmsg(family);
}

/** The IPCTNL_MSG_CT_DELETE request of one flow, by its original tuple (what `conntrack -D --orig-*` sends). */
export function ctDeleteRequest(flow: Flow): Buffer {
  return Buffer.concat([nfgenmsg(flow.family), tuple(CTA_TUPLE_ORIG, flow)]);
}

interface Tuple { src: string; dst: string; proto: number; sport?: number; dport?: number }

function readTuple(data: Buffer | undefined, family: 4 | 6): Tuple | undefined {
  if (!data) return undefined;
  const parts = attrs(data);
  const ip = attrs(parts.get(CTA_TUPLE_IP) ?? Buffer.alloc(0));
  const proto = attrs(parts.get(CTA_TUPLE_PROTO) ?? Buffer.alloc(0));
  const src = ip.get(family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
  const dst = ip.get(family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  const num = proto.get(CTA_PROTO_NUM);
  if (!src || !dst || !num) return undefined;
  const sport = proto.get(CTA_PROTO_SRC_PORT);
  const dport = proto.get(CTA_PROTO_DST_PORT);
  return { src: bytesToIp(src, family), dst: bytesToIp(dst, family), proto: num.readUInt8(0), ...(sport ? { sport: sport.readUInt16BE(0) } : {}), ...(dport ? { dport: dport.readUInt16BE(0) } : {}) };
}

/** One IPCTNL_MSG_CT_NEW message of a dump as a flow of `proto`, or undefined (another protocol, or not readable). */
export function parseCtMessage(data: Buffer, proto: DatagramProto): Flow | undefined {
  if (data.length < 4) return undefined;
  const family = data.readUInt8(0) === AF_INET6 ? 6 : data.readUInt8(0) === AF_INET ? 4 : undefined;
  if (!family) return undefined;
  const top = attrs(data.subarray(4));
  const orig = readTuple(top.get(CTA_TUPLE_ORIG), family);
  const reply = readTuple(top.get(CTA_TUPLE_REPLY), family);
  if (!orig || !reply || orig.proto !== protoNumber[proto] || orig.sport === undefined || orig.dport === undefined) return undefined;
  return { family, proto, src: orig.src, dst: orig.dst, sport: orig.sport, dport: orig.dport, replySrc: reply.src };
}

/** Parses `conntrack -L` output: the first src/dst/sport/dport are the original tuple, the second src the reply's. */
export function parseFlows(text: string, family: 4 | 6, proto: DatagramProto): Flow[] {
  const flows: Flow[] = [];
  for (const line of text.split('\n')) {
    const values = (key: string): string[] => [...line.matchAll(new RegExp(`(?:^|\\s)${key}=(\\S+)`, 'g'))].map((m) => m[1] ?? '');
    const [src, replySrc] = values('src');
    const [dst] = values('dst');
    const [sport] = values('sport');
    const [dport] = values('dport');
    if (!src || !dst || !replySrc || !sport || !dport) continue;
    flows.push({ family, proto, src: canonicalIp(src) ?? src, dst: canonicalIp(dst) ?? dst, sport: Number(sport), dport: Number(dport), replySrc: canonicalIp(replySrc) ?? replySrc });
  }
  return flows;
}

const familyArg = (family: 4 | 6): string => (family === 4 ? 'ipv4' : 'ipv6');

export function listArgs(family: 4 | 6, proto: DatagramProto): string[] {
  return ['-L', '-f', familyArg(family), '-p', proto];
}

/** Deletes exactly one flow, by its original tuple. */
export function deleteArgs(flow: Flow): string[] {
  return ['-D', '-f', familyArg(flow.family), '-p', flow.proto, '--orig-src', flow.src, '--orig-dst', flow.dst, '--orig-port-src', String(flow.sport), '--orig-port-dst', String(flow.dport)];
}
