// `--backend auto`'s choice (src/backends/choose.ts) on the real kernel, in a namespace:
// nft when it works and the kernel takes natctl's features, else iptables-legacy, with a reason.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseBackend } from '../../src/backends/choose.js';
import { createRunner } from '../../src/backends/exec.js';
import { e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

describe.runIf(enabled)('backend choice for --backend auto', () => {
  const netns = `nc-choice-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  beforeAll(() => execa('ip', ['netns', 'add', netns]));
  afterAll(() => execa('ip', ['netns', 'del', netns], { reject: false }));

  it('chooses nft where it works, and commits nothing while probing', async () => {
    const choice = await chooseBackend(createRunner(netns), 'nft');
    expect(choice.name).toBe('nft');
    expect(choice.reason).toMatch(/kernel accepts/);
    expect(String((await execa('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables'])).stdout)).toBe('');
  });

  it('falls back to iptables-legacy when nft does not work, saying why', async () => {
    const choice = await chooseBackend(createRunner(netns), '/nonexistent/nft');
    expect(choice.name).toBe('iptables-legacy');
    expect(choice.reason).toMatch(/\/nonexistent\/nft does not work/);
    expect(choice.reason).toMatch(/iptables-restore v[\d.]+ \(legacy\) works/);
  });
});
