// status's comparison on a real kernel (docs/operations.md, "status"): the simple mappings'
// elements are read over netlink and compared key by key, the rest of the table through a digest
// learned when a full comparison agreed. Each kind of tampering that keeps natctl's marker in
// place — an element sent elsewhere, an element removed, an element added by hand, a rule
// changed in a mapping's chain and in a fixed chain — is drift for `natctl status` (exit 6; read
// through the addon or, with NATCTL_NATIVE=0, by processes started in the namespace) and
// for the engine's periodic check (the next cheap apply repairs it); then status is in sync again.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller } from '../../src/engine/controller.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
/**
 * Enough simple mappings that the generation keeps no listing (maxKeptListing, src/engine/state.ts)
 * and that the apply's read-back takes them over netlink (4,096 or more, src/backends/nft/backend.ts).
 */
const fillers = 5000;
const config = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'admin', hostPort: 8443, target: `${addr.c2}:80`, allow: ['198.19.0.0/24'] },
    { name: 'dns', hostPort: 5353, proto: 'udp', target: `${addr.c2}:53` },
    { name: 'six', hostPort: 8086, target: '[fd00:18::2]:80' },
    ...Array.from({ length: fillers }, (_, i) => ({ name: `f${i}`, hostPort: 20000 + i, target: `${addr.c2}:80` })),
  ],
};

interface StatusJson {
  active: boolean;
  mappings: { name: string; state: string }[];
  drift: { drifted: boolean; missing: string[]; extra: string[] };
}

describe.runIf(enabled)('status and the periodic check find tampering inside natctl\'s table', () => {
  const box = new Sandbox('stdrift');
  let file = '';

  const status = async (env: Record<string, string> = {}): Promise<StatusJson & { exitCode: number }> => {
    const run = await box.natctl(['status', '--json'], env);
    expect(run.stdout, run.stderr).not.toBe('');
    return { ...(JSON.parse(run.stdout) as StatusJson), exitCode: run.exitCode };
  };
  const handleOf = async (chain: string, pattern: RegExp): Promise<string> => {
    const listing = await box.nft(['-a', 'list', 'chain', 'inet', 'natctl', chain]);
    const line = listing.split('\n').find((l) => pattern.test(l));
    const handle = /# handle (\d+)/.exec(line ?? '')?.[1];
    if (!handle) throw new Error(`no rule matching ${pattern} in chain ${chain}:\n${listing}`);
    return handle;
  };
  /** The engine's periodic check, due at once: the next apply of the same config compares as status does and repairs. */
  const periodicCheck = async (): Promise<{ kind: string; repairedDrift: boolean }> => {
    const controller = await Controller.open({ netns: box.host, stateDir: box.stateDir, fullCheckEvery: 1 });
    const result = await controller.apply(parseConfigObject(config));
    return { kind: result.kind, repairedDrift: result.repairedDrift };
  };

  beforeAll(async () => {
    await box.create();
    file = await box.writeConfig('drift.json', config);
    const applied = await box.natctl(['apply', '-f', file]);
    expect(applied.exitCode, applied.stderr).toBe(0);
  }, 120_000);
  afterAll(() => box.destroy());

  it('is in sync after the apply, whose verify taught status the shape: nft is not needed at all', async () => {
    expect(existsSync(join(box.stateDir, 'netns', box.host, 'nft-shape.json'))).toBe(true);
    // Known shape: the netlink read alone decides (an nft that always fails is never run).
    const withoutNft = await status({ NATCTL_NFT: '/bin/false' });
    expect(withoutNft.exitCode).toBe(0);
    expect(withoutNft.drift).toEqual({ drifted: false, missing: [], extra: [] });
    expect(withoutNft.mappings).toHaveLength(fillers + 4);
    // Without the addon the readers are processes started in the namespace: the same answer.
    const spawned = await status({ NATCTL_NATIVE: '0' });
    expect(spawned.exitCode).toBe(0);
    expect(spawned.mappings).toEqual(withoutNft.mappings);
    expect(await periodicCheck()).toEqual({ kind: 'noop', repairedDrift: false });
  }, 120_000);

  const cases: { what: string; tamper: () => Promise<void>; expect: RegExp }[] = [
    {
      what: 'an element sent to another target',
      tamper: async () => {
        await box.nft(['delete', 'element', 'inet', 'natctl', 'dnat4', '{', 'tcp', '.', '20003', '}']);
        await box.nft(['add', 'element', 'inet', 'natctl', 'dnat4', '{', 'tcp', '.', '20003', 'counter', 'comment', '"f3"', ':', '198.18.0.99', '.', '80', '}']);
      },
      expect: /map dnat4 element missing or different: .*"tcp",20003.*"f3"/,
    },
    {
      what: 'an element removed',
      tamper: async () => void (await box.nft(['delete', 'element', 'inet', 'natctl', 'fwd4_udp', '{', '5353', '}'])),
      expect: /set fwd4_udp has 0 elements, expected 1/,
    },
    {
      what: 'an element added by hand',
      tamper: async () => void (await box.nft(['add', 'element', 'inet', 'natctl', 'dnat4', '{', 'tcp', '.', '9999', ':', '198.18.0.99', '.', '80', '}'])),
      expect: /map dnat4 holds an element not declared: tcp \. 9999/,
    },
    {
      what: "a rule changed in a mapping's chain",
      tamper: async () => {
        const handle = await handleOf('m-admin', /dnat/);
        await box.nft(['replace', 'rule', 'inet', 'natctl', 'm-admin', 'handle', handle, 'counter', 'meta', 'l4proto', 'tcp', 'dnat', 'ip', 'to', '198.18.0.99:80', 'comment', '"natctl mapping admin tcp 0.0.0.0:8443"']);
      },
      expect: /chain m-admin rule 1 differs/,
    },
    {
      what: 'a rule changed in a fixed chain',
      tamper: async () => {
        const handle = await handleOf('forward', /iifname "lab0" accept/);
        await box.nft(['replace', 'rule', 'inet', 'natctl', 'forward', 'handle', handle, 'iifname', '"lab0"', 'drop', 'comment', '"natctl egress lab0"']);
      },
      expect: /chain forward rule \d+ differs/,
    },
  ];

  for (const { what, tamper, expect: message } of cases) {
    it(`${what}: drift for status and for the periodic check, which repairs it`, async () => {
      await tamper();
      for (const env of [{}, { NATCTL_NATIVE: '0' }]) {
        const drifted = await status(env);
        expect(drifted.exitCode, JSON.stringify(env)).toBe(6);
        expect(drifted.drift.drifted).toBe(true);
        expect(drifted.drift.missing.join('\n'), JSON.stringify(env)).toMatch(message);
      }
      expect(await periodicCheck()).toEqual({ kind: 'full', repairedDrift: true });
      const repaired = await status();
      expect(repaired.exitCode, repaired.drift.missing.join('\n')).toBe(0);
    }, 120_000);
  }
});
