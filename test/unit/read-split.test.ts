// When read() takes a big table's elements over netlink next to a terse listing, and when it
// lists in full instead (src/backends/nft/backend.ts, readSplit): a scripted transport and a
// scripted netlink reader, so each decision is stated without a kernel. test/e2e/read-split.test.ts
// proves the same on a real kernel.
import { describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import { DumpRaceError, type ElementsRead, type ElementsReader } from '../../src/backends/nft/netlink-read.js';
import { renderNftDocument, tableFamily, tableName } from '../../src/backends/nft/render.js';
import { ScriptedNftTransport } from '../../src/backends/nft/transport-fake.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';

const model = buildModel(parseConfigObject({
  version: 1,
  mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'dns', proto: 'udp', hostPort: 5353, target: '198.18.0.3:53' }],
}));

type Body = Record<string, unknown>;
/** The objects a load of the render leaves, as nft lists them (terse: named sets without elements). */
function listing(terse: boolean): { text: string; elements: Record<string, unknown[]> } {
  const elements: Record<string, unknown[]> = {};
  const seen = new Set<string>();
  const objects: Record<string, Body>[] = [];
  for (const command of renderNftDocument(model).nftables) {
    if (!('add' in command)) continue;
    const object = command.add as unknown as Record<string, Body>;
    const key = JSON.stringify(object);
    if (seen.has(key)) continue;
    seen.add(key);
    const kind = Object.keys(object)[0]!;
    const body = object[kind]!;
    if ((kind === 'map' || kind === 'set') && Array.isArray(body.elem)) {
      elements[String(body.name)] = body.elem as unknown[];
      if (terse) {
        const { elem: _elem, ...rest } = body;
        objects.push({ [kind]: rest });
        continue;
      }
    }
    objects.push(object);
  }
  return { text: JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, ...objects] }), elements };
}

/** A netlink reader that answers `read` and then the generation `after`. */
function reader(read: ElementsRead | Error, after = 1): ElementsReader {
  return {
    elements: async () => {
      if (read instanceof Error) throw read;
      return read;
    },
    generation: async () => after,
  };
}

const simpleElements = (): Record<string, unknown[]> => {
  const { elements } = listing(false);
  return Object.fromEntries(Object.entries(elements).filter(([name]) => /^(dnat[46](_addr)?|fwd[46]_[a-z]+(_addr)?)$/.test(name)));
};

const args = ['table', tableFamily, tableName];

describe('read() of a big table in two parts', () => {
  it('takes the elements from netlink and the rest from a terse listing: the same listing, verified alike', async () => {
    const transport = new ScriptedNftTransport().then('list', { stdout: listing(true).text });
    const backend = new NftBackend({ runner: createRunner(), transport, readElements: reader({ generation: 1, elements: simpleElements(), othersWithElements: [] }), readElementsFrom: 0 });
    const live = await backend.read();
    expect(transport.calls).toEqual([{ op: 'list', args, terse: true }]);
    expect(backend.verify(backend.render(model), live)).toEqual([]);
    const full = JSON.parse(listing(false).text) as { nftables: unknown[] };
    expect(JSON.parse(live!.raw)).toEqual(full);
  });

  it('sees an element the kernel lacks', async () => {
    const elements = simpleElements();
    elements.dnat4 = elements.dnat4!.filter((e) => !JSON.stringify(e).includes('"web"'));
    const transport = new ScriptedNftTransport().then('list', { stdout: listing(true).text });
    const backend = new NftBackend({ runner: createRunner(), transport, readElements: reader({ generation: 1, elements, othersWithElements: [] }), readElementsFrom: 0 });
    expect(backend.verify(backend.render(model), await backend.read())).toContainEqual(expect.stringMatching(/^map dnat4 element missing or different: .*"web"/));
  });

  it('after a load of as many elements: lists (terse) before the element dumps are decoded, between two generation reads', async () => {
    const order: string[] = [];
    const transport = new ScriptedNftTransport().then('run', {}).then('list', { stdout: listing(true).text });
    const generations = [7, 7];
    const backend = new NftBackend({
      runner: createRunner(),
      transport,
      readElements: {
        elements: async () => {
          order.push(`elements (${transport.calls.length} calls)`);
          return { generation: 7, elements: simpleElements(), othersWithElements: [] };
        },
        generation: async () => {
          order.push('generation');
          return generations.shift() ?? 8;
        },
      },
      readElementsFrom: 2,
    });
    const ruleset = backend.render(model);
    await backend.load(ruleset);
    const live = await backend.read();
    // The terse listing was already asked for when the dumps began: the two run at once.
    expect(order).toEqual(['generation', 'elements (2 calls)', 'generation']);
    expect(transport.calls.map((c) => c.op)).toEqual(['run', 'list']);
    expect(backend.verify(ruleset, live)).toEqual([]);
    expect(live!.rawLongerThan?.(10)).toBe(true);
    expect(live!.rawLongerThan?.(1 << 20)).toBe(false);
  });

  it('after a load, a commit between the generation reads makes it list in full', async () => {
    const transport = new ScriptedNftTransport().then('run', {}).then('list', { stdout: listing(true).text }).then('list', { stdout: listing(false).text });
    const generations = [7, 8];
    const backend = new NftBackend({
      runner: createRunner(),
      transport,
      readElements: { elements: async () => ({ generation: 7, elements: simpleElements(), othersWithElements: [] }), generation: async () => generations.shift() ?? 8 },
      readElementsFrom: 2,
    });
    const ruleset = backend.render(model);
    await backend.load(ruleset);
    const live = await backend.read();
    expect(transport.calls.slice(1)).toEqual([{ op: 'list', args, terse: true }, { op: 'list', args }]);
    expect(live?.raw).toBe(listing(false).text);
  });

  it('reads again once after a dump that raced a resize; lists at once after any other failure (no table)', async () => {
    let calls = 0;
    const racing: ElementsReader = {
      elements: async () => {
        calls++;
        if (calls === 1) throw new DumpRaceError('dnat4 changed shape while it was dumped (a key came twice)');
        return { generation: 1, elements: simpleElements(), othersWithElements: [] };
      },
      generation: async () => 1,
    };
    const transport = new ScriptedNftTransport().then('list', { stdout: listing(true).text });
    const backend = new NftBackend({ runner: createRunner(), transport, readElements: racing, readElementsFrom: 0 });
    expect(backend.verify(backend.render(model), await backend.read())).toEqual([]);
    expect(calls).toBe(2);
    let missing = 0;
    const noTable: ElementsReader = { elements: async () => { missing++; throw new Error('No such file or directory'); }, generation: async () => 1 };
    const empty = new ScriptedNftTransport().then('list', { exitCode: 1, stderr: 'Error: No such file or directory\n' });
    expect(await new NftBackend({ runner: createRunner(), transport: empty, readElements: noTable, readElementsFrom: 0 }).read()).toBeNull();
    expect(missing).toBe(1);
  });

  it.each([
    ['the ruleset changed between the dump and the listing', reader({ generation: 1, elements: simpleElements(), othersWithElements: [] }, 2), 0, true],
    ['another map holds elements (a terse listing drops them)', reader({ generation: 1, elements: simpleElements(), othersWithElements: ['dnat4_tcp_chains'] }), 0, false],
    ['the table is small', reader({ generation: 1, elements: simpleElements(), othersWithElements: [] }), 4096, false],
    ['netlink fails (an element it does not decode, no socket)', reader(new Error('dnat4: an element carries attribute 4, not read over netlink')), 0, false],
  ] as const)('lists in full when %s', async (_why, elementsReader, from, terseFirst) => {
    const transport = new ScriptedNftTransport();
    if (terseFirst) transport.then('list', { stdout: listing(true).text });
    transport.then('list', { stdout: listing(false).text });
    const backend = new NftBackend({ runner: createRunner(), transport, readElements: elementsReader, readElementsFrom: from });
    const live = await backend.read();
    expect(transport.calls).toEqual([...(terseFirst ? [{ op: 'list', args, terse: true }] : []), { op: 'list', args }]);
    expect(live?.raw).toBe(listing(false).text);
    expect(backend.verify(backend.render(model), live)).toEqual([]);
  });
});
