// Host sockets that listen on a port (for the "port in use" warning, docs/troubleshooting.md):
// what `ss -l -n` prints, parsed. The in-process path reads the same through sock_diag
// (sock-diag.ts); ss stays the fallback, the SCTP reader and, with -p, the process finder.
import { ipFamily } from '../config/addr.js';

export interface Listener {
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
