// Docker's `-p` syntax: [hostIp:]hostPort[-end]:containerPort[-end][/proto], IPv6 host
// addresses in brackets. natctl never picks ports itself, so Docker's forms that leave the
// host port to the daemon (`80`, `127.0.0.1::80`) are refused with a reason.
import { canonicalIp, ipFamily, unusableHostIpReason } from './addr.js';
import { type PortRange, parsePortRange, portRangeLength } from './ports.js';
import type { Proto } from './schema.js';

export interface PublishSpec {
  hostIp?: string;
  hostPort: PortRange;
  containerPort: PortRange;
  proto: Proto;
}

export function parsePublish(spec: string): PublishSpec | string {
  let rest = spec.trim();
  let proto: Proto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const protoText = rest.slice(slash + 1).toLowerCase();
    if (protoText !== 'tcp' && protoText !== 'udp' && protoText !== 'sctp') {
      return `has protocol "${rest.slice(slash + 1)}"; use tcp, udp or sctp`;
    }
    proto = protoText;
    rest = rest.slice(0, slash);
  }

  let hostIp: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') return 'has an unclosed "[" around the host IPv6 address';
    const inner = rest.slice(1, close);
    if (ipFamily(inner) !== 6) return `has "${inner}" in brackets, which is not an IPv6 address`;
    const unusable = unusableHostIpReason(inner);
    if (unusable) return `has host IP "${inner}", which ${unusable}`;
    hostIp = canonicalIp(inner);
    rest = rest.slice(close + 2);
  }

  const parts = rest.split(':');
  if (hostIp === undefined && parts.length === 3) {
    const ipText = parts.shift() ?? '';
    if (ipText !== '') {
      if (ipFamily(ipText) !== 4) return `has host IP "${ipText}", which is not an IPv4 address (write IPv6 as [addr])`;
      const unusable = unusableHostIpReason(ipText);
      if (unusable) return `has host IP "${ipText}", which ${unusable}`;
      hostIp = canonicalIp(ipText);
    }
  }
  if (parts.length === 1) return 'has no host port: natctl publishes fixed ports only (write hostPort:containerPort)';
  if (parts.length !== 2) return 'is not of the form [hostIp:]hostPort:containerPort[/proto]';
  const [hostText = '', containerText = ''] = parts;
  if (hostText === '') return 'has an empty host port: natctl publishes fixed ports only';
  const hostPort = parsePortRange(hostText);
  if (typeof hostPort === 'string') return `has host port "${hostText}", which ${hostPort}`;
  const containerPort = parsePortRange(containerText);
  if (typeof containerPort === 'string') return `has container port "${containerText}", which ${containerPort}`;
  if (portRangeLength(hostPort) !== portRangeLength(containerPort)) {
    return `has a host range of ${portRangeLength(hostPort)} ports and a container range of ${portRangeLength(containerPort)}; they must be the same length`;
  }
  return hostIp === undefined ? { hostPort, containerPort, proto } : { hostIp, hostPort, containerPort, proto };
}
