// Configs that load but cannot work as written on this host get a warning at apply and in
// doctor: a hostIp that is not a local address, and a hostPort a host process listens on
// (Docker would fail to bind it; with natctl the DNAT takes the port from that process).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

interface Check { check: string; status: string; message: string; fix?: string }

describe.runIf(enabled)('host checks at apply and in doctor', () => {
  const box = new Sandbox('local');
  let config = '';

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    // A host process on the host side: a published port it already listens on.
    await box.serve(box.host, 'hostproc', { tcp: [9100], udp: [9200] });
    config = await box.writeConfig('local.json', {
      version: 1,
      networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
      mappings: [
        { name: 'good', hostIp: addr.hostLocalA, hostPort: 8080, target: `${addr.c1}:80` },
        { name: 'elsewhere', hostIp: '198.18.9.9', hostPort: 8081, target: `${addr.c1}:80` },
        { name: 'busy', hostPort: 9100, target: `${addr.c1}:80` },
        { name: 'busyudp', proto: 'udp', hostPort: '9190-9210', target: `${addr.c1}:9190-9210` },
        { name: 'free', hostPort: 9101, target: `${addr.c1}:80` },
      ],
    });
  });
  afterAll(() => box.destroy());

  it('apply warns about a host IP that is not local and a port a host process listens on, and applies', async () => {
    const run = await box.natctl(['apply', '-f', config]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/warning: mapping elsewhere: host IP 198\.18\.9\.9 is not a local address/);
    expect(run.stdout).toMatch(/warning: mapping busy: tcp port 9100 is already listened on by node \(pid \d+\)/);
    expect(run.stdout).toMatch(/warning: mapping busyudp: udp port 9200 is already listened on/);
    expect(run.stdout).not.toMatch(/mapping (good|free):/);
    // What the warning says: the DNAT takes the port from the host process.
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 9100)).toMatch(/^c1 /);
    // An unchanged re-apply still warns, in JSON too.
    const again = await box.natctl(['apply', '-f', config, '--json']);
    expect(again.exitCode).toBe(0);
    const warnings = (JSON.parse(again.stdout) as { warnings: string[] }).warnings;
    expect(warnings.filter((w) => /mapping (elsewhere|busy|busyudp):/.test(w))).toHaveLength(3);
  });

  it('doctor reports the same, with a fix', async () => {
    const run = await box.natctl(['doctor', '-f', config, '--json']);
    const checks = JSON.parse(run.stdout) as Check[];
    const warn = (pattern: RegExp): Check | undefined => checks.find((c) => c.status === 'warn' && pattern.test(c.message));
    expect(warn(/host IP 198\.18\.9\.9 is not a local address/)?.fix).toContain('ip addr add 198.18.9.9/32');
    expect(warn(/mapping busy: tcp port 9100/)?.check).toBe('port in use');
    expect(checks.some((c) => /mapping (good|free):/.test(c.message))).toBe(false);
  });
});
