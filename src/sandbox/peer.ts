// A tiny network peer for the sandbox (tests and demo), run inside one of its namespaces.
//   serve NAME --tcp 80,30000 --udp 53   answers every connection/datagram with "NAME <peer address>"
//   connect tcp|udp HOST PORT [--bind ADDR] [--sport PORT] [--timeout MS]   prints the answer, or "ERR <reason>"
import net from 'node:net';
import dgram from 'node:dgram';

const [mode, ...rest] = process.argv.slice(2);
const flag = (name: string, fallback: string | undefined): string | undefined => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : fallback;
};
const plain = (address: string | undefined): string => (address ?? '').replace(/^::ffff:/, '');

if (mode === 'serve') {
  const name = rest[0] ?? 'peer';
  const tcp = (flag('--tcp', '') || '').split(',').filter(Boolean).map(Number);
  const udp = (flag('--udp', '') || '').split(',').filter(Boolean).map(Number);
  let pending = tcp.length + udp.length * 2;
  const ready = (): void => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  for (const port of tcp) {
    net.createServer((socket) => {
      socket.on('error', () => {});
      socket.end(`${name} ${plain(socket.remoteAddress)} ${socket.localPort}\n`);
    }).listen({ port, host: '::', ipv6Only: false }, ready);
  }
  for (const port of udp) {
    for (const type of ['udp4', 'udp6'] as const) {
      const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
      socket.on('message', (_msg, peer) => socket.send(`${name} ${plain(peer.address)} ${port}\n`, peer.port, peer.address));
      socket.bind(port, type === 'udp4' ? '0.0.0.0' : '::', ready);
    }
  }
} else if (mode === 'connect') {
  const [proto, host, portText] = rest;
  const port = Number(portText);
  const bind = flag('--bind', undefined);
  const timeout = Number(flag('--timeout', '2000'));
  const finish = (text: string): never => {
    process.stdout.write(`${text.trim()}\n`);
    process.exit(0);
  };
  setTimeout(() => finish('ERR timeout'), timeout).unref();
  if (proto === 'tcp') {
    const socket = net.connect({ host: host ?? '', port, ...(bind ? { localAddress: bind } : {}) });
    let data = '';
    socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
    socket.on('end', () => finish(data || 'ERR empty'));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(`ERR ${error.code ?? error.message}`));
  } else {
    const socket = dgram.createSocket(net.isIPv6(host ?? '') ? 'udp6' : 'udp4');
    socket.on('message', (msg: Buffer) => finish(msg.toString()));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(`ERR ${error.code ?? error.message}`));
    const send = (): void => socket.send('ping', port, host);
    // A fixed source port keeps a "flow": the same conntrack entry across calls.
    const sport = Number(flag('--sport', '0'));
    if (bind || sport) socket.bind(sport, bind, send);
    else send();
    // UDP may lose the first datagram while ARP/ND resolves: resend a few times.
    const again = setInterval(send, 300);
    again.unref();
  }
} else {
  process.stderr.write('usage: peer.mjs serve NAME [--tcp P,..] [--udp P,..] | connect tcp|udp HOST PORT [--bind A] [--timeout MS]\n');
  process.exit(2);
}
