// natctl owns one table and nothing else: other nft tables and iptables rules stay byte for byte.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

describe.runIf(enabled)('coexistence with other rulesets', () => {
  const box = new Sandbox('coex');
  let file = '';

  const otherState = async (): Promise<string> => {
    const other = await box.nft(['list', 'table', 'inet', 'other']);
    const legacy = await box.exec(box.host, 'iptables-legacy-save', []);
    const iptNft = await box.exec(box.host, 'iptables-nft-save', []);
    // Comments carry timestamps; chain counters move with any traffic (ARP, the test's own packets).
    const strip = (text: string): string => text.split('\n').filter((l) => !l.startsWith('#')).join('\n').replace(/\[\d+:\d+\]/g, '[c]');
    return `${other.replace(/packets \d+ bytes \d+/g, 'packets c')}\n--legacy--\n${strip(legacy.stdout)}\n--nft--\n${strip(iptNft.stdout)}`;
  };

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.ext, 'ext', { tcp: [7000] });
    const otherTable = 'table inet other {\n chain input {\n  type filter hook input priority 10; policy accept;\n  tcp dport 2222 counter accept\n }\n}\n';
    const otherFile = await box.writeConfig('other.nft', otherTable);
    await execa('ip', ['netns', 'exec', box.host, 'nft', '-f', otherFile]);
    await execa('ip', ['netns', 'exec', box.host, 'iptables-legacy', '-A', 'INPUT', '-s', '198.18.9.9', '-j', 'DROP']);
    await execa('ip', ['netns', 'exec', box.host, 'iptables-nft', '-A', 'INPUT', '-s', '198.18.9.8', '-j', 'DROP']);
    file = await box.writeConfig('natctl.json', { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }] });
  });
  afterAll(() => box.destroy());

  it('apply and flush leave an unrelated nft table and iptables rules exactly as they were', async () => {
    const before = await otherState();
    expect((await box.natctl(['apply', '-f', file])).exitCode).toBe(0);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await otherState()).toBe(before);
    const flushed = await box.natctl(['flush']);
    expect(flushed.exitCode).toBe(0);
    expect(await otherState()).toBe(before);
    const tables = await box.nft(['list', 'tables']);
    expect(tables).not.toContain('natctl');
    expect(tables).toContain('table inet other');
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe('ERR ECONNREFUSED');
  });

  it('a network with snat to a range sends its egress from an address of the range', async () => {
    const snatFile = await box.writeConfig('snat.json', { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], snat: { to: `${addr.snatPool[0]}-${addr.snatPool[2]}`, outInterface: 'up0' } }] });
    expect((await box.natctl(['apply', '-f', snatFile])).exitCode).toBe(0);
    const seen = (await box.connect(box.c1, 'tcp', addr.ext, 7000)).split(' ')[1];
    expect(addr.snatPool).toContain(seen);
    expect((await box.natctl(['flush'])).exitCode).toBe(0);
  });

  it('flush when natctl holds nothing succeeds and changes nothing', async () => {
    const before = await otherState();
    expect((await box.natctl(['flush'])).exitCode).toBe(0);
    expect(await otherState()).toBe(before);
  });

  it('an invalid config exits 2, names the field and value, and does not touch the kernel', async () => {
    expect((await box.natctl(['apply', '-f', file])).exitCode).toBe(0);
    const ruleset = await box.nft(['list', 'ruleset']);
    const bad = await box.writeConfig('bad.yaml', 'version: 1\nmappings:\n  - hostPort: 70000\n    target: 198.18.0.2:80\n');
    const result = await box.natctl(['apply', '-f', bad]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('mappings[0].hostPort');
    expect(result.stderr).toContain('70000');
    expect(await box.nft(['list', 'ruleset'])).toBe(ruleset);
  });
});
