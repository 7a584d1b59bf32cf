// Listening sockets through NETLINK_SOCK_DIAG (inet_diag), what `ss -l -n -t -u` reads, without
// spawning ss (docs/operations.md, "Host settings"). One dump per address family and protocol:
// a SOCK_DIAG_BY_FAMILY request with NLM_F_DUMP and a state mask, answered with one
// inet_diag_msg per socket (linux/inet_diag.h). The process owning a socket is not in the
// answer (ss -p finds it by walking /proc): that stays a command, run only once a clash is found.
import { bigToIp } from '../config/addr.js';
import type { Listener } from './listeners.js';

export const NETLINK_SOCK_DIAG = 4;
export const SOCK_DIAG_BY_FAMILY = 20;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
// `ss -l` asks for the states LISTEN and CLOSE: a listening TCP socket is in TCP_LISTEN, an
// unconnected (bound, "UNCONN") UDP socket in TCP_CLOSE.
const TCP_CLOSE = 7;
const TCP_LISTEN = 10;
export const listeningStates = (1 << TCP_LISTEN) | (1 << TCP_CLOSE);
/**
 * TCP: LISTEN alone finds the same sockets (a bound TCP socket that does not listen is in no
 * table inet_diag walks), and a mask without any other state lets the kernel skip the walk of
 * the established hash (inet_diag_dump_icsk), which costs ~0.5 ms per dump here, whatever the
 * namespace holds.
 */
export const tcpListeningStates = 1 << TCP_LISTEN;

/** struct inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes). */
export function inetDiagRequest(family: 4 | 6, proto: 'tcp' | 'udp', states = proto === 'tcp' ? tcpListeningStates : listeningStates): Buffer {
  const request = Buffer.alloc(56);
  request.writeUInt8(family === 4 ? AF_INET : AF_INET6, 0);
  request.writeUInt8(proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP, 1);
  request.writeUInt32LE(states >>> 0, 4);
  return request;
}

/**
 * One inet_diag_msg as a listener: family, state, timer, retrans (4 bytes), then the sockid:
 * sport and dport (big-endian), src and dst (16 bytes each; IPv4 uses the first 4). An
 * all-zero source is a wildcard bind. undefined for a message too short to be one.
 */
export function parseInetDiag(data: Buffer, proto: 'tcp' | 'udp'): Listener | undefined {
  if (data.length < 72) return undefined;
  const family = data.readUInt8(0) === AF_INET6 ? 6 : 4;
  const port = data.readUInt16BE(4);
  const bytes = data.subarray(8, family === 4 ? 12 : 24);
  if (port === 0) return undefined;
  const listener: Listener = { proto, port };
  if (bytes.some((b) => b !== 0)) listener.addr = bigToIp(BigInt(`0x${bytes.toString('hex')}`), family);
  return listener;
}
