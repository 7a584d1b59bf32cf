// The read-back of a big table in two parts (src/backends/nft/backend.ts, readSplit; docs/performance.md,
// "Reading the ruleset back"): the simple mappings' elements over netlink, everything else from a terse nft listing. On a
// real kernel, through both transports, with the size threshold at 0 so a small table takes that path:
// it finds exactly what one full nft listing finds, a changed, missing or extra element and a changed
// rule included, and a table whose other maps hold elements is listed in full.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ruleset } from '../../src/backends/backend.js';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import { elementsReader } from '../../src/backends/nft/netlink-read.js';
import type { NftResult, NftTransport } from '../../src/backends/nft/transport.js';
import { NativeNftTransport } from '../../src/backends/nft/transport-native.js';
import { SpawnNftTransport } from '../../src/backends/nft/transport-spawn.js';
import { loadNativeBinding, nativeBindingStatus } from '../../src/backends/native.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();
const binding = process.env.NATCTL_NATIVE === '0' ? undefined : loadNativeBinding();
/**
 * The netlink half enters the namespace through the addon (withNetns), whichever transport
 * carries nft: without the addon natctl lists in full and there is nothing to test here. Under
 * CI the addon must be there (setup.sh installs libnftables-dev; npm ci builds it).
 */
const addonRuns = enabled && (binding !== undefined || (process.env.CI === 'true' && process.env.NATCTL_NATIVE !== '0'));

const simple = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [
    { name: 'web', hostPort: 8080, target: `${addr.c1}:80` },
    { name: 'dns', proto: 'udp', hostPort: 5353, target: `${addr.c2}:53` },
    { name: 'bound', hostIp: addr.hostUp, hostPort: 8081, target: `${addr.c2}:80` },
    // Ports and addresses whose bytes sort differently in either byte order (nft's listing order).
    { name: 'low', hostPort: 256, target: `${addr.c1}:81` },
    { name: 'high', hostPort: 1025, target: `${addr.c2}:82` },
    { name: 'bound-low', hostIp: addr.hostUp, hostPort: 512, target: `${addr.c1}:83` },
    { name: 'bound-udp', proto: 'udp', hostIp: addr.hostUp, hostPort: 1025, target: `${addr.c2}:84` },
    { name: 'six', hostPort: 8082, target: `[${addr.c1v6}]:80` },
    { name: 'six-bound', hostIp: addr.hostUp6, hostPort: 513, target: `[${addr.c2v6}]:80` },
    { name: 'six-low', proto: 'udp', hostPort: 1026, target: `[${addr.c2v6}]:81` },
    { name: 'six-bound-high', hostIp: addr.hostUp6, hostPort: 8443, target: `[${addr.c1v6}]:82` },
  ],
  block: [{ name: 'no-mysql', proto: 'tcp', hostPort: 3306 }],
};
/** A mapping with an allow list has a chain of its own, reached through a dispatch map's element. */
const complex = { ...simple, mappings: [...simple.mappings, { name: 'admin', hostPort: 8443, target: `${addr.c1}:443`, allow: ['198.19.0.0/24'] }] };

/** Records whether each listing was terse. */
class Recording implements NftTransport {
  readonly kind: NftTransport['kind'];
  readonly description = 'recording';
  lists: boolean[] = [];
  constructor(private readonly inner: NftTransport) {
    this.kind = inner.kind;
  }
  run(batch: string, options: { check: boolean }): Promise<NftResult> {
    return this.inner.run(batch, options);
  }
  list(args: readonly string[], options: { terse?: boolean } = {}): Promise<NftResult> {
    this.lists.push(options.terse === true);
    return this.inner.list(args, options);
  }
  version(): Promise<string> {
    return this.inner.version();
  }
}

describe.each([
  { name: 'spawned nft', runs: addonRuns },
  { name: 'addon', runs: addonRuns },
])('read-back in two parts through $name', ({ name, runs }) => {
  const box = new Sandbox(name === 'addon' ? 'rsa' : 'rss');
  let transport: Recording;
  let split: NftBackend;
  let full: NftBackend;
  let ruleset: Ruleset;

  const makeTransport = (): NftTransport => {
    if (name === 'spawned nft') return new SpawnNftTransport({ runner: createRunner(box.host) });
    if (!binding) throw new Error(`the in-process addon is not loaded under CI=true: ${JSON.stringify(nativeBindingStatus())}`);
    return new NativeNftTransport(binding, box.host);
  };

  /** Problems found by the split read and by one full listing: always the same; and whether the split read was terse. */
  const readBoth = async (wanted: Ruleset): Promise<{ problems: string[]; terse: boolean }> => {
    transport.lists = [];
    const live = await split.read();
    const terse = transport.lists.includes(true);
    const problems = split.verify(wanted, live);
    const listed = await full.read();
    expect(problems).toEqual(full.verify(wanted, listed));
    const byName = (counters: { name: string }[] = []) => [...counters].sort((a, b) => a.name.localeCompare(b.name));
    expect(byName(live?.counters)).toEqual(byName(listed?.counters));
    // Elements in nft's order: the normalized listings (what apply compares around a restore) agree.
    const lines = (text = "") => text.split("\n");
    expect(lines(live?.normalized)).toEqual(lines(listed?.normalized));
    return { problems, terse };
  };

  beforeAll(async () => {
    if (!runs) return;
    await box.create();
    const reader = elementsReader(createRunner(box.host));
    if (!reader) throw new Error('the netlink reader cannot enter the namespace in process (the addon is not loaded)');
    transport = new Recording(makeTransport());
    split = new NftBackend({ runner: createRunner(box.host), transport, readElements: reader, readElementsFrom: 0 });
    full = new NftBackend({ runner: createRunner(box.host), transport: makeTransport() });
    ruleset = split.render(buildModel(parseConfigObject(simple)));
  });
  afterAll(() => box.destroy());

  it.runIf(runs)('reads what was loaded as one full listing does, and restores it', async () => {
    await split.load(ruleset);
    expect(await readBoth(ruleset)).toEqual({ problems: [], terse: true });
    const live = await split.read();
    await box.nft(['flush', 'table', 'inet', 'natctl']);
    expect((await readBoth(ruleset)).problems.length).toBeGreaterThan(0);
    await split.restore(live);
    expect(await readBoth(ruleset)).toEqual({ problems: [], terse: true });
  });

  it.runIf(runs)('sees a changed, a missing and an extra element', async () => {
    await split.load(ruleset);
    await box.nft(['delete', 'element', 'inet', 'natctl', 'dnat4', '{ tcp . 8080 }']);
    await box.nft(['add', 'element', 'inet', 'natctl', 'dnat4', '{ tcp . 8080 comment "web" : 198.18.0.9 . 80 }']);
    const changed = await readBoth(ruleset);
    expect(changed.terse).toBe(true);
    expect(changed.problems).toEqual([expect.stringMatching(/^map dnat4 element missing or different: .*"web"/)]);

    await split.load(ruleset);
    await box.nft(['delete', 'element', 'inet', 'natctl', 'fwd4_tcp', '{ 8080 }']);
    const missing = await readBoth(ruleset);
    expect(missing.terse).toBe(true);
    expect(missing.problems).toEqual(['set fwd4_tcp has 2 elements, expected 3', expect.stringMatching(/^set fwd4_tcp element missing or different: .*8080/)]);

    await split.load(ruleset);
    await box.nft(['add', 'element', 'inet', 'natctl', 'dnat4', '{ tcp . 9999 comment "extra" : 198.18.0.2 . 80 }']);
    const extra = await readBoth(ruleset);
    expect(extra.terse).toBe(true);
    expect(extra.problems).toEqual(['map dnat4 has 5 elements, expected 4']);
  });

  it.runIf(runs)('sees a changed rule', async () => {
    await split.load(ruleset);
    const listing = JSON.parse(await box.nft(['-j', 'list', 'chain', 'inet', 'natctl', 'forward'])) as { nftables: { rule?: { handle: number } }[] };
    const handle = listing.nftables.find((o) => o.rule)!.rule!.handle;
    await box.nft(['replace', 'rule', 'inet', 'natctl', 'forward', 'handle', String(handle), 'meta', 'l4proto', 'tcp', 'accept']);
    const changed = await readBoth(ruleset);
    expect(changed.terse).toBe(true);
    expect(changed.problems).toEqual([expect.stringMatching(/^chain forward rule 1 differs: /)]);
  });

  it.runIf(runs)('lists in full when another map holds elements (a terse listing would drop them)', async () => {
    const withChains = split.render(buildModel(parseConfigObject(complex)));
    await split.load(withChains);
    expect(await readBoth(withChains)).toEqual({ problems: [], terse: false });
    await box.nft(['delete', 'element', 'inet', 'natctl', 'dnat4_tcp_chains', '{ 8443 }']);
    const missing = await readBoth(withChains);
    expect(missing.terse).toBe(false);
    expect(missing.problems).toContainEqual(expect.stringMatching(/^map dnat4_tcp_chains /));
  });
});
