// The quick-start demo runs clean, and Ctrl-C in the middle removes its sandbox.
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const demo = join(repoRoot, 'dist/demo/main.js');
const namespaces = async (): Promise<string> => String((await execa('ip', ['netns', 'list'])).stdout);

describe.runIf(enabled)('demo', () => {
  it('passes every traffic check, shows status, and leaves no namespace behind', async () => {
    const run = await execa(process.execPath, [demo], { reject: false, env: { NO_COLOR: '1' } });
    const out = String(run.stdout);
    expect(run.exitCode, out + String(run.stderr)).toBe(0);
    expect(out).toContain('all checks passed');
    for (const label of ['external', 'local', 'hairpin', 'ipv6', 'range', 'udp', 'egress', 'blocked']) expect(out).toMatch(new RegExp(`ok\\s+${label}`));
    expect(out).toMatch(/MAPPING\s+HOST SIDE/);
    const host = /namespaces (nc-demo-\S+-h)/.exec(out)?.[1];
    expect(host).toBeDefined();
    expect(await namespaces()).not.toContain(host!.slice(0, -2));
  });

  it('tears the sandbox down on Ctrl-C', async () => {
    const child = execa(process.execPath, [demo], { reject: false, env: { NO_COLOR: '1' } });
    let output = '';
    const built = new Promise<string>((resolve) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match = /namespaces (nc-demo-\S+)-h/.exec(output);
        if (match?.[1]) resolve(match[1]);
      });
    });
    const prefix = await built;
    expect(await namespaces()).toContain(prefix);
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(130);
    expect(await namespaces()).not.toContain(prefix);
  });
});
