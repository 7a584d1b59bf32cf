// Issue 7, "Traffic that goes where it must not": each defect proved by packets between
// namespaces (docs/ruleset.md, docs/config.md). Every describe block builds its own sandbox.
import { type ResultPromise, execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
const lab0 = (extra: Record<string, unknown> = {}) => ({ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'], ...extra });

async function apply(box: Sandbox, name: string, config: unknown): Promise<void> {
  const result = await box.natctl(['apply', '-f', await box.writeConfig(name, config)]);
  expect(result.stderr).toBe('');
  expect(result.exitCode).toBe(0);
}

async function sysctl(box: Sandbox, netns: string, key: string): Promise<string> {
  return (await box.exec(netns, 'sysctl', ['-n', key])).stdout.trim();
}

describe.runIf(enabled)('item 1: a 127.0.0.1 binding exposes nothing else on the host loopback', () => {
  const box = new Sandbox('lo');
  let secret: ResultPromise | undefined;
  const routeLocalnet = () => sysctl(box, box.host, 'net.ipv4.conf.lab0.route_localnet');
  const loopbackConfig = { version: 1, networks: [lab0()], mappings: [{ publish: '127.0.0.1:6379:6379', target: addr.c2, network: 'lab0' }] };
  const plainConfig = { version: 1, networks: [lab0()], mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }] };

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c2, 'c2', { tcp: [6379] });
    // A host service bound to loopback only: nothing outside the host may reach it.
    secret = execa('ip', ['netns', 'exec', box.host, process.execPath, '-e', "require('net').createServer((s) => s.end('secret\\n')).listen(7001, '127.0.0.1', () => console.log('ready'))"], { reject: false, stdin: 'ignore' });
    await new Promise<void>((resolve) => secret?.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
    // c1 plays the attacker: it sends 127.0.0.1 to its gateway (route_localnet on its side).
    for (const key of ['net.ipv4.conf.all.route_localnet=1', 'net.ipv4.conf.eth0.route_localnet=1']) await box.exec(box.c1, 'sysctl', ['-q', '-w', key]);
    // Its TCP to 127/8 is routed to the gateway (a rule ahead of the local table); replies from 127.0.0.1 are accepted.
    await box.ip(box.c1, ['route', 'add', '127.0.0.0/8', 'via', addr.bridge4, 'dev', 'eth0', 'table', '100']);
    await box.ip(box.c1, ['rule', 'add', 'pref', '10', 'to', '127.0.0.0/8', 'ipproto', 'tcp', 'lookup', '100']);
    await box.ip(box.c1, ['rule', 'add', 'pref', '200', 'lookup', 'local']);
    await box.ip(box.c1, ['rule', 'del', 'pref', '0']);
  });
  afterAll(async () => {
    if (secret?.pid !== undefined) process.kill(secret.pid, 'SIGKILL');
    await secret;
    await box.destroy();
  });

  it('the mapping works, and a workload routing 127.0.0.1 via the gateway reaches no host loopback service', async () => {
    expect(await routeLocalnet()).toBe('0');
    await apply(box, 'lo.json', loopbackConfig);
    expect(await routeLocalnet()).toBe('1');
    expect(await box.connect(box.host, 'tcp', '127.0.0.1', 6379)).toBe(`c2 ${addr.bridge4} 6379`);
    expect(await box.connect(box.host, 'tcp', '127.0.0.1', 7001)).toBe('secret');
    expect(await box.connect(box.c1, 'tcp', '127.0.0.1', 7001, { timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.c1, 'tcp', '127.0.0.1', 6379, { timeoutMs: 1000 })).toBe('ERR timeout');
  });

  it('route_localnet goes back to its earlier value when no loopback mapping needs it, across runs and after flush', async () => {
    await apply(box, 'plain.json', plainConfig);
    expect(await routeLocalnet()).toBe('0');
    await apply(box, 'lo.json', loopbackConfig);
    expect(await routeLocalnet()).toBe('1');
    expect((await box.natctl(['flush'])).exitCode).toBe(0);
    expect(await routeLocalnet()).toBe('0');
  });

  it('an interface that had route_localnet on before natctl keeps it', async () => {
    await box.exec(box.host, 'sysctl', ['-q', '-w', 'net.ipv4.conf.lab0.route_localnet=1']);
    await apply(box, 'lo.json', loopbackConfig);
    await apply(box, 'plain.json', plainConfig);
    expect(await routeLocalnet()).toBe('1');
    await box.exec(box.host, 'sysctl', ['-q', '-w', 'net.ipv4.conf.lab0.route_localnet=0']);
  });
});

describe.runIf(enabled)('items 2, 3 and 5: unspecified host IPs, target-port blocks, UDP flows to a new mapping', () => {
  const box = new Sandbox('trf');

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80, 443], udp: [53] });
    await box.serve(box.ext, 'ext', { tcp: [443, 7000] });
    await box.serve(box.host, 'host', { tcp: [8080, 8081, 8082], udp: [5300, 5301] });
  });
  afterAll(() => box.destroy());

  it('item 2: 0.0.0.0 and :: as host IP publish on every local address of the family, as in Docker', async () => {
    await apply(box, 'any.json', {
      version: 1,
      networks: [lab0()],
      mappings: [
        { publish: '0.0.0.0:8080:80', target: addr.c1 },
        { name: 'any-ip', hostIp: '0.0.0.0', hostPort: 8081, target: `${addr.c1}:80` },
        { publish: '[::]:8082:80', target: addr.c1v6 },
      ],
    });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostLocalA, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp6, 8082)).toBe(`c1 ${addr.ext6} 80`);
    const status = JSON.parse((await box.natctl(['status', '--json'])).stdout) as { mappings: { name: string; state: string }[] };
    expect(status.mappings.map((m) => `${m.name} ${m.state}`)).toEqual(['tcp-8080 active', 'any-ip active', 'tcp6-8082 active']);
  });

  it('item 3: a block by targetPort drops published connections, not the workloads\' own outbound ones', async () => {
    await apply(box, 'block.json', {
      version: 1,
      networks: [lab0()],
      mappings: [{ name: 'tls', hostPort: 8443, target: `${addr.c1}:443` }],
      block: [{ name: 'no-tls', proto: 'tcp', targetPort: 443 }],
    });
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8443, { timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.c1, 'tcp', addr.ext, 443)).toBe(`ext ${addr.hostUp} 443`);
  });

  it('item 5: a UDP client already talking to the host\'s own port reaches the workload once a mapping for it is added', async () => {
    const none = { version: 1, networks: [lab0()] };
    await apply(box, 'none.json', none);
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5300, { sport: 41000 })).toBe(`host ${addr.ext} 5300`);
    expect(await box.connect(box.ext, 'udp', addr.hostLocalA, 5300, { sport: 41001 })).toBe(`host ${addr.ext} 5300`);
    expect(await box.connect(box.ext, 'udp', addr.hostLocalB, 5300, { sport: 41002 })).toBe(`host ${addr.ext} 5300`);
    expect(await box.connect(box.ext, 'udp', addr.hostUp6, 5300, { sport: 41004 })).toBe(`host ${addr.ext6} 5300`);
    await apply(box, 'udp.json', { ...none, mappings: [
      { name: 'dns', proto: 'udp', hostPort: 5300, target: `${addr.c1}:53` },
      { name: 'dns6', proto: 'udp', hostPort: 5300, target: `[${addr.c1v6}]:53` },
    ] });
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5300, { sport: 41000 })).toBe(`c1 ${addr.ext} 53`);
    expect(await box.connect(box.ext, 'udp', addr.hostLocalA, 5300, { sport: 41001 })).toBe(`c1 ${addr.ext} 53`);
    expect(await box.connect(box.ext, 'udp', addr.hostUp6, 5300, { sport: 41004 })).toBe(`c1 ${addr.ext6} 53`);
    // A host-IP binding clears flows to that address only.
    expect(await box.connect(box.ext, 'udp', addr.hostLocalB, 5301, { sport: 41003 })).toBe(`host ${addr.ext} 5301`);
    expect(await box.connect(box.ext, 'udp', addr.hostLocalA, 5301, { sport: 41005 })).toBe(`host ${addr.ext} 5301`);
    await apply(box, 'udp-bound.json', { ...none, mappings: [
      { name: 'dns', proto: 'udp', hostPort: 5300, target: `${addr.c1}:53` },
      { name: 'dns6', proto: 'udp', hostPort: 5300, target: `[${addr.c1v6}]:53` },
      { name: 'dns-b', proto: 'udp', hostIp: addr.hostLocalB, hostPort: 5301, target: `${addr.c1}:53` },
    ] });
    expect(await box.connect(box.ext, 'udp', addr.hostLocalB, 5301, { sport: 41003 })).toBe(`c1 ${addr.ext} 53`);
    expect(await box.connect(box.ext, 'udp', addr.hostLocalA, 5301, { sport: 41005 })).toBe(`host ${addr.ext} 5301`);
  });
});

describe.runIf(enabled)('item 4: gateway modes: no direct routed access around the published ports', () => {
  const box = new Sandbox('gw');
  const config = (gatewayMode: string | undefined) => ({
    version: 1,
    networks: [lab0(gatewayMode ? { gatewayMode } : {})],
    mappings: [
      { name: 'tls', hostPort: 8443, target: `${addr.c1}:443`, allow: [`${addr.ext}/32`] },
      { name: 'tls6', hostPort: 8443, target: `[${addr.c1v6}]:443` },
      { name: 'open', hostPort: 8444, target: `${addr.c2}:443` },
    ],
    block: [{ name: 'c2-tls', proto: 'tcp', targetPort: 443, except: [`${addr.ext}/32`, `${addr.ext6}/128`] }],
  });

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [443, 81] });
    await box.serve(box.c2, 'c2', { tcp: [443] });
    await box.serve(box.ext, 'ext', { tcp: [7000] });
    // The outside client routes the workloads' subnets to the host ("direct routing").
    await box.ip(box.ext, ['route', 'add', '198.18.0.0/24', 'via', addr.hostUp]);
    await box.ip(box.ext, ['-6', 'route', 'add', 'fd00:18::/64', 'via', addr.hostUp6]);
  });
  afterAll(() => box.destroy());

  it('nat (the default): only the published ports reach the workloads; their allow-lists and blocks hold', async () => {
    await apply(box, 'nat.json', config(undefined));
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8443, { bind: addr.ext })).toBe(`c1 ${addr.ext} 443`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8443, { bind: addr.ext2, timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1, 443, { bind: addr.ext2, timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1, 443, { bind: addr.ext, timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1, 81, { timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1v6, 443, { timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c2, 443, { bind: addr.ext2, timeoutMs: 1000 })).toBe('ERR timeout');
    // The host itself still reaches the workloads; the workloads still go out, masqueraded.
    expect(await box.connect(box.host, 'tcp', addr.c1, 81)).toBe(`c1 ${addr.bridge4} 81`);
    expect(await box.connect(box.c1, 'tcp', addr.ext, 7000)).toBe(`ext ${addr.hostUp} 7000`);
  });

  it('routed: no NAT on egress; direct access to published target ports only, under the allow-lists and blocks', async () => {
    await apply(box, 'routed.json', config('routed'));
    expect(await box.connect(box.ext, 'tcp', addr.c1, 443, { bind: addr.ext })).toBe(`c1 ${addr.ext} 443`);
    expect(await box.connect(box.ext, 'tcp', addr.c1, 443, { bind: addr.ext2, timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1, 81, { timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.ext, 'tcp', addr.c1v6, 443)).toBe(`c1 ${addr.ext6} 443`);
    expect(await box.connect(box.ext, 'tcp', addr.c2, 443, { bind: addr.ext })).toBe(`c2 ${addr.ext} 443`);
    expect(await box.connect(box.ext, 'tcp', addr.c2, 443, { bind: addr.ext2, timeoutMs: 1000 })).toBe('ERR timeout');
    expect(await box.connect(box.c1, 'tcp', addr.ext, 7000)).toBe(`ext ${addr.c1} 7000`);
    // The published host port keeps working too (natctl's mappings name their host port).
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8443, { bind: addr.ext })).toBe(`c1 ${addr.ext} 443`);
  });

  it('nat-unprotected: direct routed access is open (the opt-out), egress is masqueraded', async () => {
    await apply(box, 'unprotected.json', config('nat-unprotected'));
    expect(await box.connect(box.ext, 'tcp', addr.c1, 81, { bind: addr.ext2 })).toBe(`c1 ${addr.ext2} 81`);
    expect(await box.connect(box.c1, 'tcp', addr.ext, 7000)).toBe(`ext ${addr.hostUp} 7000`);
  });
});

describe.runIf(enabled)('item 6: hairpin: false, and hairpin for a target in no declared network', () => {
  const box = new Sandbox('hp');
  const hairpinOf = async (port: string): Promise<boolean> => (await box.exec(box.host, 'ip', ['-d', 'link', 'show', port])).stdout.includes('hairpin on');

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
  });
  afterAll(() => box.destroy());

  it('hairpin: false turns hairpin off: no self or sibling hairpin (br_netfilter on), outside clients still served', async () => {
    const mappings = [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }];
    await apply(box, 'on.json', { version: 1, networks: [lab0()], mappings });
    expect(await hairpinOf('vc1')).toBe(true);
    expect(await box.connect(box.c2, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.bridge4} 80`);
    await apply(box, 'off.json', { version: 1, networks: [lab0({ hairpin: false })], mappings });
    expect(await sysctl(box, box.host, 'net.bridge.bridge-nf-call-iptables')).toBe('1');
    expect(await hairpinOf('vc1')).toBe(false);
    expect(await hairpinOf('vc2')).toBe(false);
    expect(await box.connect(box.c2, 'tcp', addr.hostUp, 8080, { timeoutMs: 1000 })).toMatch(/^ERR /);
    expect(await box.connect(box.c1, 'tcp', addr.hostUp, 8080, { timeoutMs: 1000 })).toMatch(/^ERR /);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('a workload reaches its own published port through the host although its network is not declared', async () => {
    await apply(box, 'undeclared.json', { version: 1, mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }] });
    expect(await box.connect(box.c1, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.bridge4} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });
});
