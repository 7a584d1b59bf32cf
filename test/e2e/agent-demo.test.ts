// The node-agent demo (scripts/agent-demo.sh, README) runs clean, and Ctrl-C in the middle
// stops its agent and removes its sandbox.
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const script = join(repoRoot, 'scripts/agent-demo.sh');
const namespaces = async (): Promise<string> => String((await execa('ip', ['netns', 'list'])).stdout);
// The tree is already built by the suite's setup; the script's own setup step is covered by the README's scripts.
const env = { NO_COLOR: '1', NATCTL_SKIP_SETUP: '1' };

describe.runIf(enabled)('agent demo', () => {
  it('serves a dropped-in fragment, shows /healthz and /metrics, keeps the rules on SIGTERM, leaves nothing behind', async () => {
    const run = await execa('bash', [script], { reject: false, env });
    const out = String(run.stdout);
    expect(run.exitCode, out + String(run.stderr)).toBe(0);
    expect(out).toContain('all checks passed');
    for (const label of ['serving', 'removed', 'rules stay']) expect(out).toMatch(new RegExp(`ok\\s+${label}`));
    expect(out).toMatch(/\/healthz: \{"healthy":true/);
    expect(out).toContain('natctl_mappings_managed 1');
    const host = /namespaces (nc-agent-\S+)-h/.exec(out)?.[1];
    expect(host).toBeDefined();
    expect(await namespaces()).not.toContain(host!);
    const pid = Number(/pid=(\d+)/.exec(out)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('Ctrl-C stops the agent and removes the sandbox', async () => {
    const child = execa('bash', [script], { reject: false, env });
    let output = '';
    const started = new Promise<{ prefix: string; pid: number }>((resolve) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const prefix = /namespaces (nc-agent-\S+)-h/.exec(output)?.[1];
        const pid = /pid=(\d+)/.exec(output)?.[1];
        if (prefix && pid) resolve({ prefix, pid: Number(pid) });
      });
    });
    const { prefix, pid } = await started;
    expect(await namespaces()).toContain(prefix);
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode, output).toBe(130);
    expect(await namespaces()).not.toContain(prefix);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
