// Switching backend over an existing state (issue 9, item 6; docs/iptables.md "Choosing the
// backend"): the apply that switches removes the old backend's rules once the new ones are
// loaded and verified; `natctl rollback` (auto) goes back to the backend of the generation it
// restores; `auto` then keeps the last generation's backend. Proved by packets and the ruleset
// each backend's kernel tables hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

const config = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'web6', hostPort: 8080, target: `[${addr.c1v6}]:80` },
  ],
};

interface Applied { changed: boolean; generation: number; backend: { name: string; reason: string } }

describe.runIf(enabled)('switching backend over an existing state', () => {
  const box = new Sandbox('swb');
  let file = '';
  const nftTables = async (): Promise<string> => box.nft(['list', 'tables']);
  const natctlChains = async (): Promise<string[]> => {
    const save = async (tool: string): Promise<string> => (await box.exec(box.host, tool, [])).stdout;
    return `${await save('iptables-legacy-save')}${await save('ip6tables-legacy-save')}`.split('\n').filter((l) => l.includes('NATCTL-'));
  };
  const apply = async (args: string[]): Promise<Applied> => {
    const run = await box.natctl(['apply', '-f', file, '--json', ...args]);
    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    return JSON.parse(run.stdout) as Applied;
  };
  const served = async (): Promise<void> => {
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp6, 8080)).toBe(`c1 ${addr.ext6} 80`);
  };

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    file = await box.writeConfig('natctl.json', config);
  });
  afterAll(() => box.destroy());

  it('nft, then iptables-legacy: the nft table is gone in the same apply, the iptables rules hold, packets flow', async () => {
    const first = await apply(['--backend', 'nft']);
    expect(first.backend).toEqual({ name: 'nft', reason: 'nft was asked for (--backend nft)' });
    expect(await nftTables()).toContain('table inet natctl');
    await served();

    const switched = await apply(['--backend', 'iptables-legacy']);
    expect(switched.changed).toBe(true);
    expect(switched.backend.name).toBe('iptables-legacy');
    expect(await nftTables()).not.toContain('natctl');
    expect(await natctlChains()).toContain('-A PREROUTING -m addrtype --dst-type LOCAL -j NATCTL-PREROUTING');
    await served();
    const status = await box.natctl(['status', '--json']);
    expect(status.exitCode).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ backend: 'iptables-legacy', active: true, drift: { drifted: false } });
  });

  it('auto keeps the last generation\'s backend, and says so', async () => {
    const again = await apply([]);
    expect(again.changed).toBe(false);
    expect(again.backend).toEqual({ name: 'iptables-legacy', reason: 'the last generation was applied with iptables-legacy, which still works' });
  });

  it('rollback (auto) goes back to nft: the iptables rules are gone, the nft table is back, packets flow', async () => {
    const rolled = await box.natctl(['rollback', '--json']);
    expect(rolled.stderr).toBe('');
    expect(rolled.exitCode).toBe(0);
    expect(JSON.parse(rolled.stdout)).toMatchObject({ changed: true, backend: 'nft' });
    expect(await natctlChains()).toEqual([]);
    expect(await nftTables()).toContain('table inet natctl');
    await served();
    const status = await box.natctl(['status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ backend: 'nft', active: true, drift: { drifted: false } });
  });
});
