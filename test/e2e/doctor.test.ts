// natctl doctor finds each misconfiguration it claims to find, set up for real in a
// namespace, and finds nothing wrong with a healthy one.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eEnabled, repoRoot } from '../helpers/topology.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const enabled = e2eEnabled();

interface Check { check: string; status: string; message: string; fix?: string }

describe.runIf(enabled)('natctl doctor', () => {
  const id = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const healthy = `nc-doc-${id}-ok`;
  const broken = `nc-doc-${id}-bad`;
  let dir = '';
  let configFile = '';
  const ip = (ns: string, args: string[]) => execa('ip', ['-n', ns, ...args]);
  const inNs = (ns: string, command: string, args: string[]) => execa('ip', ['netns', 'exec', ns, command, ...args]);

  const doctor = async (ns: string, env: Record<string, string> = {}): Promise<{ exitCode: number; checks: Check[] }> => {
    const run = await execa(process.execPath, [join(repoRoot, 'dist/cli/main.js'), '--netns', ns, '--state-dir', join(dir, 'state'), 'doctor', '-f', configFile, '--json'], { reject: false, env });
    return { exitCode: run.exitCode ?? 1, checks: JSON.parse(String(run.stdout)) as Check[] };
  };
  const find = (checks: Check[], status: string, pattern: RegExp): Check | undefined => checks.find((c) => c.status === status && pattern.test(`${c.check} ${c.message}`));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-doctor-'));
    configFile = join(dir, 'natctl.json');
    await writeFile(configFile, JSON.stringify({
      version: 1,
      networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }, { name: 'lab9', subnets: ['198.18.9.0/24'] }],
      mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'web6', hostPort: 8080, target: '[fd00:18::2]:80' }],
    }));
    for (const ns of [healthy, broken]) {
      await execa('ip', ['netns', 'add', ns]);
      await ip(ns, ['link', 'add', 'lab0', 'type', 'bridge']);
      await ip(ns, ['link', 'add', 'v1', 'type', 'veth', 'peer', 'name', 'v1peer']);
      await ip(ns, ['link', 'set', 'v1', 'master', 'lab0']);
      await ip(ns, ['link', 'set', 'lab0', 'up']);
    }
    // healthy: forwarding on, gateway addresses on both bridges, hairpin on
    await inNs(healthy, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await ip(healthy, ['addr', 'add', '198.18.0.1/24', 'dev', 'lab0']);
    await ip(healthy, ['addr', 'add', 'fd00:18::1/64', 'dev', 'lab0', 'nodad']);
    await ip(healthy, ['link', 'add', 'lab9', 'type', 'bridge']);
    await ip(healthy, ['link', 'set', 'lab9', 'up']);
    await ip(healthy, ['addr', 'add', '198.18.9.1/24', 'dev', 'lab9']);
    await execa('bridge', ['-n', healthy, 'link', 'set', 'dev', 'v1', 'hairpin', 'on']);
    // broken: forwarding off, no gateway address, hairpin off, lab9 missing, Docker-style
    // FORWARD DROP (legacy and nft), firewalld's table, and someone else's DNAT on 8080
    await inNs(broken, 'iptables-legacy', ['-P', 'FORWARD', 'DROP']);
    await inNs(broken, 'iptables-nft', ['-P', 'FORWARD', 'DROP']);
    await inNs(broken, 'iptables-nft', ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '8080', '-j', 'DNAT', '--to-destination', '198.18.0.9:80']);
    await inNs(broken, 'nft', ['add', 'table', 'inet', 'firewalld']);
    await inNs(broken, 'nft', ['add', 'table', 'inet', 'strict']);
    await inNs(broken, 'nft', ['add', 'chain', 'inet', 'strict', 'gate', '{ type filter hook forward priority 10; policy accept; }']);
    await inNs(broken, 'nft', ['add', 'rule', 'inet', 'strict', 'gate', 'ip daddr 198.18.0.0/24', 'drop']);
  });
  afterAll(async () => {
    for (const ns of [healthy, broken]) await execa('ip', ['netns', 'del', ns], { reject: false });
    await rm(dir, { recursive: true, force: true });
  });

  it('finds nothing wrong with a healthy host', async () => {
    const { exitCode, checks } = await doctor(healthy);
    expect(checks.filter((c) => c.status === 'fail' || c.status === 'warn')).toEqual([]);
    expect(exitCode).toBe(0);
    expect(find(checks, 'pass', /^nft nftables v/)).toBeDefined();
    expect(find(checks, 'pass', /^kernel /)).toBeDefined();
    expect(find(checks, 'pass', /^hairpin lab0/)).toBeDefined();
    expect(find(checks, 'info', /^iptables .*iptables-legacy/)).toBeDefined();
    expect(find(checks, 'pass', /^native binding in-process libnftables addon loaded/)).toBeDefined();
  });

  it('finds each misconfiguration, with a fix, and exits 3', async () => {
    const { exitCode, checks } = await doctor(broken);
    expect(exitCode).toBe(3);
    const expectations: [string, RegExp][] = [
      ['fail', /^ip_forward IPv4 forwarding is off/],
      ['fail', /^ip6_forward IPv6 forwarding is off/],
      ['fail', /^network lab9 interface lab9 does not exist/],
      ['warn', /^network lab0 lab0 holds no address in 198\.18\.0\.0\/24/],
      ['warn', /^hairpin lab0 hairpin mode is off on v1/],
      ['warn', /^forward policy iptables-legacy filter FORWARD has policy DROP/],
      ['warn', /^forward policy table ip filter chain FORWARD has policy drop/],
      ['warn', /^firewalld /],
      ['warn', /^forward rules table inet strict chain gate has 1 drop\/reject rule/],
      ['warn', /^port clash host port 8080 of mapping web is already DNATed by table ip nat chain PREROUTING/],
    ];
    for (const [status, pattern] of expectations) {
      const check = find(checks, status, pattern);
      expect(check, `${status} ${pattern}\n${JSON.stringify(checks, null, 1)}`).toBeDefined();
      expect(check?.fix).toBeTruthy();
    }
  });

  it('fails the kernel check when the kernel refuses natctl\'s features', async () => {
    const realNft = String((await execa('sh', ['-c', 'command -v nft'])).stdout).trim();
    // The fake nft refuses any batch naming doctor's probe table, as a kernel without NAT would.
    const { exitCode, checks } = await doctor(healthy, { NATCTL_NFT: join(repoRoot, 'test/helpers/fake-nft.sh'), REAL_NFT: realNft, FAKE_NFT_REFUSE: 'natctl_doctor' });
    expect(exitCode).toBe(3);
    expect(find(checks, 'fail', /^kernel the kernel refuses natctl's features/)?.fix).toMatch(/modprobe/);
  });

  it('fails the nft check when the nft binary is missing', async () => {
    const { exitCode, checks } = await doctor(healthy, { NATCTL_NFT: '/nonexistent/nft' });
    expect(exitCode).toBe(3);
    expect(find(checks, 'fail', /^nft /)?.fix).toMatch(/apt-get install nftables/);
  });
});
