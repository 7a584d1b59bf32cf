// Doctor checks of the iptables-legacy backend (src/backends/iptables/doctor.ts) on a real
// kernel, in a namespace of their own: healthy, then with rules that would drop or race
// natctl's traffic.
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { iptablesDoctor } from '../../src/backends/iptables/doctor.js';
import { createRunner } from '../../src/backends/exec.js';
import { parseConfigObject } from '../../src/config/load.js';
import { buildModel } from '../../src/model/build.js';
import { e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

describe.runIf(enabled)('iptables-legacy doctor', () => {
  const netns = `nc-iptdoc-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const model = buildModel(parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] }));
  const inNs = (tool: string, args: string[]): Promise<unknown> => execa('ip', ['netns', 'exec', netns, tool, ...args]);

  beforeAll(async () => {
    await execa('ip', ['netns', 'add', netns]);
    const backend = new IptablesBackend({ runner: createRunner(netns) });
    await backend.load(backend.render(model));
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', netns], { reject: false });
  });

  it('passes on a healthy host: tools, kernel extensions, nothing shadowing natctl', async () => {
    const checks = await iptablesDoctor(createRunner(netns), model);
    expect(checks.find((c) => c.check === 'iptables-legacy')?.status).toBe('pass');
    expect(checks.find((c) => c.check === 'iptables extensions')?.status).toBe('pass');
    expect(checks.filter((c) => c.status === 'fail' || c.status === 'warn').filter((c) => c.check !== 'xtables lock')).toEqual([]);
  });

  it('warns about a rule above natctl\'s FORWARD jump, an iptables-nft FORWARD drop and an iptables-nft DNAT on a published port', async () => {
    await inNs('iptables-legacy', ['-I', 'FORWARD', '1', '-s', '198.19.0.99', '-j', 'DROP']);
    await inNs('iptables-nft', ['-P', 'FORWARD', 'DROP']);
    await inNs('iptables-nft', ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '8080', '-j', 'DNAT', '--to-destination', '198.18.0.9:80']);
    const checks = await iptablesDoctor(createRunner(netns), model);
    const messages = checks.filter((c) => c.status === 'warn').map((c) => c.message).join('\n');
    expect(messages).toContain("iptables-legacy IPv4 FORWARD: 1 rule(s) come before natctl's jump");
    expect(messages).toContain('iptables-nft FORWARD has policy DROP');
    expect(messages).toContain('iptables-nft DNATs port 8080, which mapping web publishes');
  });
});
