// Which calls the addon transport runs in process and which in a forked nft (docs/performance.md,
// "Big batches out of process"): a scripted binding records what reached libnftables, and the
// nft binary is `true` (runs, changes nothing) or a path that does not exist (cannot run).
// test/e2e/nft-transports.test.ts proves the fork inside a namespace on a real kernel.
import { afterEach, describe, expect, it } from 'vitest';
import type { NativeBinding } from '../../src/backends/native.js';
import { NativeNftTransport, bigBatch } from '../../src/backends/nft/transport-native.js';

function scriptedBinding(): NativeBinding & { calls: { size: number; terse: boolean }[] } {
  const calls: { size: number; terse: boolean }[] = [];
  return {
    calls,
    libnftablesVersion: '1.0.6',
    run: async (input, options) => {
      calls.push({ size: input.length, terse: options.terse === true });
      return { rc: 0, output: '{"nftables":[]}', error: '' };
    },
  };
}

const big = `add table inet natctl\n${'#'.repeat(bigBatch)}\n`;
const saved = process.env.NATCTL_NFT;
afterEach(() => {
  if (saved === undefined) delete process.env.NATCTL_NFT;
  else process.env.NATCTL_NFT = saved;
});

describe('the addon transport', () => {
  it('runs small batches and full listings in process, a batch over 1 MB and a terse listing in a forked nft', async () => {
    process.env.NATCTL_NFT = 'true';
    const binding = scriptedBinding();
    const transport = new NativeNftTransport(binding);
    expect((await transport.run('add table inet natctl\n', { check: false })).exitCode).toBe(0);
    expect((await transport.list(['table', 'inet', 'natctl'])).exitCode).toBe(0);
    expect(binding.calls).toEqual([{ size: 22, terse: false }, { size: 'list table inet natctl'.length, terse: false }]);
    const loaded = await transport.run(big, { check: false });
    expect(loaded).toMatchObject({ exitCode: 0, command: expect.stringMatching(/^nft -j -f \S+$/) });
    expect((await transport.list(['table', 'inet', 'natctl'], { terse: true })).command).toBe('nft -t -j list table inet natctl');
    // Neither reached libnftables: `true` ran them.
    expect(binding.calls).toHaveLength(2);
  });

  it('runs them in process when no nft binary can be run, and stops trying', async () => {
    process.env.NATCTL_NFT = '/nonexistent/nft';
    const binding = scriptedBinding();
    const transport = new NativeNftTransport(binding);
    expect((await transport.run(big, { check: false })).exitCode).toBe(0);
    expect((await transport.list(['table', 'inet', 'natctl'], { terse: true })).exitCode).toBe(0);
    expect(binding.calls).toEqual([{ size: big.length, terse: false }, { size: 'list table inet natctl'.length, terse: true }]);
  });

  it('keeps every call in process when asked to', async () => {
    process.env.NATCTL_NFT = 'true';
    const binding = scriptedBinding();
    const transport = new NativeNftTransport(binding, undefined, { inProcessOnly: true });
    await transport.run(big, { check: true });
    await transport.list(['table', 'inet', 'natctl'], { terse: true });
    expect(binding.calls).toEqual([{ size: big.length, terse: false }, { size: 'list table inet natctl'.length, terse: true }]);
  });
});
