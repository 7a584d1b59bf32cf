// The data plane's client and server: two short Python programs run with `python3 -c`
// (nothing to build or download). Measured here: a Node client tops out at 3,000-7,000
// new connections/s on this 2-core VM, a blocking Python loop at 18,000-22,000, so Python's
// per-connection cost (~50 us with the kernel's share) is small enough that DNAT's extra
// microseconds show in the ratio (docs/performance.md, "How it is measured").
//
// Client: HOST PORT SECONDS MAX -> prints "OK ERRORS SECONDS". One connection at a time:
// connect (SO_SNDTIMEO bounds a lost SYN to 1 s), then close with SO_LINGER 0, i.e. a RST, so
// neither side keeps TIME_WAIT sockets or runs out of ports; bounded by time and count.
export const clientScript = `
import socket, struct, sys, time
host, port, seconds, maxcount = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
linger = struct.pack('ii', 1, 0)
timeout = struct.pack('ll', 1, 0)
S, L, T = socket.SOL_SOCKET, socket.SO_LINGER, socket.SO_SNDTIMEO
ok = err = 0
clock = time.perf_counter
start = clock()
deadline = start + seconds
addr = (host, port)
while ok + err < maxcount and clock() < deadline:
    s = socket.socket()
    s.setsockopt(S, L, linger)
    s.setsockopt(S, T, timeout)
    try:
        s.connect(addr)
        ok += 1
    except OSError:
        err += 1
    s.close()
print(ok, err, clock() - start)
`;

// Server: PORT -> prints "ready", then accepts and closes every connection until killed.
export const serverScript = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(4096)
print('ready', flush=True)
while True:
    try:
        c, _ = s.accept()
        c.close()
    except OSError:
        pass
`;

export interface ClientReport {
  ok: number;
  errors: number;
  seconds: number;
}

export function parseClientReport(stdout: string): ClientReport | undefined {
  const [ok, errors, seconds] = stdout.trim().split(/\s+/).map(Number);
  if (ok === undefined || errors === undefined || seconds === undefined || ![ok, errors, seconds].every(Number.isFinite) || seconds <= 0) return undefined;
  return { ok, errors, seconds };
}
