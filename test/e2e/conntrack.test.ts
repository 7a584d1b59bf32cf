// A UDP client keeps its conntrack entry (and so its DNAT target) for as long as it keeps
// sending. When natctl moves or removes a UDP mapping, it clears those entries, so the next
// datagram follows the new ruleset instead of the old target. Run against both backends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

const mapping = (target: string) => ({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'dns', proto: 'udp', hostPort: 5353, target: `${target}:53` }] });

for (const backend of ['nft', 'iptables-legacy'] as const) {
describe.runIf(enabled)(`stale UDP flows (${backend})`, () => {
  const box = new Sandbox(backend === 'nft' ? 'ct' : 'cti');
  const natctl = (args: string[]): ReturnType<Sandbox['natctl']> => box.natctl([...args, '--backend', backend]);

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { udp: [53] });
    await box.serve(box.c2, 'c2', { udp: [53] });
  });
  afterAll(() => box.destroy());

  it('a UDP flow follows a mapping whose target changed', async () => {
    expect((await natctl(['apply', '-f', await box.writeConfig('a.json', mapping(addr.c2))])).exitCode).toBe(0);
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5353, { sport: 40000 })).toBe(`c2 ${addr.ext} 53`);
    const moved = await natctl(['apply', '-f', await box.writeConfig('b.json', mapping(addr.c1))]);
    expect(moved.exitCode).toBe(0);
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5353, { sport: 40000 })).toBe(`c1 ${addr.ext} 53`);
  });

  it('a UDP flow stops when its mapping is removed', async () => {
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5353, { sport: 40001 })).toBe(`c1 ${addr.ext} 53`);
    const removed = await natctl(['apply', '-f', await box.writeConfig('c.json', { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }] })]);
    expect(removed.exitCode).toBe(0);
    expect(await box.connect(box.ext, 'udp', addr.hostUp, 5353, { sport: 40001, timeoutMs: 1000 })).toBe('ERR timeout');
  });
});
}
