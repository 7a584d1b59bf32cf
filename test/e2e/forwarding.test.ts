// Every forwarding behaviour of issue 2, proved by packets between namespaces, for each
// backend: the same config must give the same packets on nft and on iptables-legacy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

export type BackendChoice = 'nft' | 'iptables-legacy';

const enabled = e2eEnabled();

export const forwardingConfig = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }],
  mappings: [
    { name: 'web', network: 'lab0', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'web6', network: 'lab0', hostPort: 8080, target: `[${addr.c1v6}]:80` },
    { name: 'bound', hostIp: addr.hostLocalA, hostPort: 8081, target: `${addr.c1}:80` },
    { name: 'allowed', hostPort: 8082, target: `${addr.c1}:80`, allow: [`${addr.ext}/32`] },
    { name: 'blocked', hostPort: 8083, target: `${addr.c1}:80` },
    { name: 'dns', proto: 'udp', hostPort: 5353, target: `${addr.c2}:53` },
    { name: 'range', hostPort: '31000-31002', target: addr.c1 },
    { name: 'shifted', hostPort: '32000-32002', target: `${addr.c1}:31000-31002` },
    { name: 'lb', hostPort: 9000, targets: [`${addr.c1}:80`, `${addr.c2}:80`] },
    { publish: '8084:80', target: addr.c2 },
    { publish: '127.0.0.1:6379:6379/tcp', target: addr.c2, network: 'lab0' },
  ],
  snat: [{ source: `${addr.c2}/32`, outInterface: 'up0', to: `${addr.snatPool[0]}-${addr.snatPool[2]}` }],
  block: [{ proto: 'tcp', hostPort: 8083, except: [`${addr.ext}/32`] }],
};

/** The whole forwarding suite against one backend (`--backend` on every natctl call that opens the kernel). */
export function forwardingSuite(backend: BackendChoice): void {
describe.runIf(enabled)(`port forwarding on a real kernel (${backend})`, () => {
  const box = new Sandbox(backend === 'nft' ? 'fwd' : 'fwdi');
  const natctl = (args: string[]): ReturnType<Sandbox['natctl']> => box.natctl([...args, '--backend', backend]);
  /** What the kernel holds for natctl, with counters stripped. */
  const kernelRuleset = async (): Promise<string> => {
    if (backend === 'nft') return (await box.nft(['-a', '-j', 'list', 'table', 'inet', 'natctl'])).replace(/"counter": \{[^}]*\}/g, '');
    const save = async (tool: string): Promise<string> => (await box.exec(box.host, tool, ['-c'])).stdout;
    return `${await save('iptables-legacy-save')}${await save('ip6tables-legacy-save')}`.split('\n').filter((l) => !l.startsWith('#')).join('\n').replace(/\[\d+:\d+\]/g, '[c]');
  };

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80, 31000, 31001, 31002] });
    await box.serve(box.c2, 'c2', { tcp: [80, 6379], udp: [53] });
    await box.serve(box.ext, 'ext', { tcp: [7000] });
    const file = await box.writeConfig('natctl.json', forwardingConfig);
    const applied = await natctl(['apply', '-f', file]);
    expect(applied.stderr).toBe('');
    expect(applied.exitCode).toBe(0);
  });
  afterAll(() => box.destroy());

  it('an outside client reaches the target, which sees the real client address', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('the host itself reaches the target through its own address (output path)', async () => {
    expect(await box.connect(box.host, 'tcp', addr.hostUp, 8080)).toMatch(/^c1 /);
  });

  it('a workload reaches its own published port through the host address (hairpin)', async () => {
    expect(await box.connect(box.c1, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.bridge4} 80`);
  });

  it('another workload on the same network reaches it the same way', async () => {
    expect(await box.connect(box.c2, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.bridge4} 80`);
  });

  it('an unmapped port stays closed', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8090)).toBe('ERR ECONNREFUSED');
  });

  it('a host-IP binding is open on the bound address and closed on the others', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostLocalA, 8081)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostLocalB, 8081)).toBe('ERR ECONNREFUSED');
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe('ERR ECONNREFUSED');
  });

  it('an allow-list lets the allowed source in and keeps another out', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082, { bind: addr.ext })).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8082, { bind: addr.ext2 })).toBe('ERR timeout');
  });

  it('a block rule on a host port drops clients, except the excepted source', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8083, { bind: addr.ext2 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8083, { bind: addr.ext })).toBe(`c1 ${addr.ext} 80`);
  });

  it('forwards udp', async () => {
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5353)).toBe(`c2 ${addr.ext} 53`);
  });

  it('forwards a port range as one entry, port for port', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 31001)).toBe(`c1 ${addr.ext} 31001`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 31002)).toBe(`c1 ${addr.ext} 31002`);
  });

  it('forwards a shifted range with Docker\'s positional meaning', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 32000)).toBe(`c1 ${addr.ext} 31000`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 32001)).toBe(`c1 ${addr.ext} 31001`);
  });

  it('forwards IPv6: external, output path and hairpin', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp6, 8080)).toBe(`c1 ${addr.ext6} 80`);
    expect(await box.connect(box.host, 'tcp', addr.hostUp6, 8080)).toMatch(/^c1 /);
    expect(await box.connect(box.c2, 'tcp', addr.hostUp6, 8080)).toBe(`c1 ${addr.bridge6} 80`);
  });

  it('masquerades outbound traffic of the network on IPv4 and IPv6', async () => {
    expect(await box.connect(box.c1, 'tcp', addr.ext, 7000)).toBe(`ext ${addr.hostUp} 7000`);
    expect(await box.connect(box.c1, 'tcp', addr.ext6, 7000)).toBe(`ext ${addr.hostUp6} 7000`);
  });

  it('applies a fixed SNAT to an address range', async () => {
    const answer = await box.connect(box.c2, 'tcp', addr.ext, 7000);
    const seen = answer.split(' ')[1];
    expect(addr.snatPool).toContain(seen);
  });

  it('spreads new connections over several targets', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 24; i++) seen.add((await box.connect(box.ext, 'tcp', addr.hostUp, 9000)).split(' ')[0] ?? '');
    expect([...seen].sort()).toEqual(['c1', 'c2']);
  });

  it('accepts Docker publish syntax', async () => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8084)).toBe(`c2 ${addr.ext} 80`);
  });

  it('publishes a loopback binding to host processes only', async () => {
    expect(await box.connect(box.host, 'tcp', '127.0.0.1', 6379)).toBe(`c2 ${addr.bridge4} 6379`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 6379)).toBe('ERR ECONNREFUSED');
  });

  it('counts connections and packets per mapping in status', async () => {
    const before = await natctl(['status', '--json']);
    expect(before.exitCode).toBe(0);
    const web = (JSON.parse(before.stdout) as { mappings: { name: string; connections: number; packets: number }[] }).mappings.find((m) => m.name === 'web');
    await box.connect(box.ext, 'tcp', addr.hostUp, 8080);
    const after = await natctl(['status', '--json']);
    const web2 = (JSON.parse(after.stdout) as { mappings: { name: string; connections: number; packets: number }[] }).mappings.find((m) => m.name === 'web');
    expect(web2!.connections).toBe(web!.connections + 1);
    expect(web2!.packets).toBeGreaterThan(web!.packets);
  });

  it('a second apply of the same file changes nothing in the kernel', async () => {
    const before = await kernelRuleset();
    const file = await box.writeConfig('natctl.json', forwardingConfig);
    const again = await natctl(['apply', '-f', file, '--json']);
    expect(again.exitCode).toBe(0);
    expect(JSON.parse(again.stdout).changed).toBe(false);
    expect(await kernelRuleset()).toBe(before);
  });
});
}

forwardingSuite('nft');
forwardingSuite('iptables-legacy');
