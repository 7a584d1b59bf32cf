// The iptables-legacy backend under faults (issue 9): a refused load, a later table refused
// after an earlier one loaded, a load that reports failure after loading, a restore that
// fails too, SIGKILL mid-apply, concurrent applies, drift and its repair; and through all of
// it, every rule that is not natctl's stays byte for byte as it was.
import { execa } from 'execa';
import { mkdir, readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const fakeRestore = join(repoRoot, 'test/helpers/fake-iptables-restore.sh');

const configA = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }],
  mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }, { name: 'web6', hostPort: 8080, target: `[${addr.c1v6}]:80` }],
  block: [{ proto: 'tcp', hostPort: 8083 }],
};
const configB = {
  version: 1,
  networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
  mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c2}:80` }, { name: 'extra', hostPort: 8081, targets: [`${addr.c1}:80`, `${addr.c2}:80`] }],
};

describe.runIf(enabled)('iptables-legacy backend under faults', () => {
  const box = new Sandbox('iptf');
  let fileA = '';
  let fileB = '';
  let fakeDir = '';
  let realRestore = '';
  let others = '';
  let rulesA = '';
  let rulesB = '';

  const natctl = (args: string[], env: Record<string, string> = {}): ReturnType<Sandbox['natctl']> => box.natctl([...args, '--backend', 'iptables-legacy'], env);
  const fake = (mode: string, extra: Record<string, string> = {}): Record<string, string> => ({
    PATH: `${fakeDir}:${process.env.PATH ?? ''}`, REAL_RESTORE: realRestore, FAKE_MODE: mode, FAKE_STATE: box.workDir, ...extra,
  });
  /** Both families' nat and filter tables as iptables-save prints them, counters and timestamps stripped. */
  const save = async (): Promise<string> => {
    const text = async (tool: string): Promise<string> => (await box.exec(box.host, tool, ['-c'])).stdout;
    return `${await text('iptables-legacy-save')}--v6--\n${await text('ip6tables-legacy-save')}`.split('\n').filter((l) => !l.startsWith('#')).join('\n').replace(/\[\d+:\d+\]/g, '[c]');
  };
  const natctlLines = (text: string): string => text.split('\n').filter((l) => l.includes('NATCTL-') || l.startsWith('*') || l.startsWith('--')).join('\n');
  /** Everything that is not natctl's: rules, chains, policies of every table. */
  const otherLines = (text: string): string => text.split('\n').filter((l) => !l.includes('NATCTL-')).join('\n');
  const ipt = (tool: string, args: string[]): Promise<unknown> => execa('ip', ['netns', 'exec', box.host, tool, ...args]);

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    realRestore = String((await execa('sh', ['-c', 'command -v iptables-legacy-restore'])).stdout).trim();
    fakeDir = join(box.workDir, 'bin');
    await mkdir(fakeDir);
    await symlink(fakeRestore, join(fakeDir, 'iptables-legacy-restore'));
    // Somebody else's rules in every table and chain natctl touches, and one of their own chains.
    for (const tool of ['iptables-legacy', 'ip6tables-legacy']) {
      const v6 = tool.startsWith('ip6');
      await ipt(tool, ['-N', 'OPERATOR']);
      await ipt(tool, ['-A', 'OPERATOR', '-s', v6 ? 'fd00:19::99' : '198.19.0.99', '-j', 'DROP']);
      await ipt(tool, ['-A', 'FORWARD', '-j', 'OPERATOR']);
      await ipt(tool, ['-A', 'FORWARD', '-p', 'tcp', '--dport', '2222', '-j', 'ACCEPT']);
      await ipt(tool, ['-A', 'INPUT', '-p', 'tcp', '--dport', '2223', '-j', 'ACCEPT']);
      await ipt(tool, ['-t', 'nat', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '2224', '-j', 'REDIRECT', '--to-ports', '22']);
      await ipt(tool, ['-t', 'nat', '-A', 'POSTROUTING', '-s', v6 ? 'fd00:18:9::/64' : '198.18.9.0/24', '-j', 'MASQUERADE']);
      await ipt(tool, ['-t', 'nat', '-A', 'OUTPUT', '-p', 'udp', '--dport', '2225', '-j', 'RETURN']);
      // mangle PREROUTING holds natctl's guard (docs/iptables.md).
      await ipt(tool, ['-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '--dport', '2226', '-j', 'RETURN']);
    }
    others = otherLines(await save());
    fileA = await box.writeConfig('a.json', configA);
    fileB = await box.writeConfig('b.json', configB);
    expect((await natctl(['apply', '-f', fileB])).exitCode).toBe(0);
    rulesB = natctlLines(await save());
    expect((await natctl(['apply', '-f', fileA])).exitCode).toBe(0);
    rulesA = natctlLines(await save());
    expect(rulesA).not.toBe(rulesB);
    expect(otherLines(await save())).toBe(others);
  });
  afterAll(() => box.destroy());

  it("puts natctl's jump first in FORWARD, before everybody else's rules, and leaves those in order", async () => {
    const forward = (await box.exec(box.host, 'iptables-legacy-save', ['-t', 'filter'])).stdout.split('\n').filter((l) => l.startsWith('-A FORWARD'));
    expect(forward).toEqual(['-A FORWARD -j NATCTL-FORWARD', '-A FORWARD -j OPERATOR', '-A FORWARD -p tcp -m tcp --dport 2222 -j ACCEPT']);
  });

  it('a refused load exits 1, says the previous ruleset is in place, and it is', async () => {
    const result = await natctl(['apply', '-f', fileB], fake('refuse'));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/Operation not supported/);
    expect(result.stderr).toMatch(/previous ruleset is still in place/);
    expect(natctlLines(await save())).toBe(rulesA);
    expect(otherLines(await save())).toBe(others);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('when a later table is refused, the tables already loaded are put back and verified', async () => {
    const result = await natctl(['apply', '-f', fileB], fake('refuse-filter'));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/ipv4 nat had been loaded already and were put back as they were, verified/);
    expect(natctlLines(await save())).toBe(rulesA);
    expect(otherLines(await save())).toBe(others);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('a load that reports failure after loading is rolled back to the previous ruleset', async () => {
    const result = await natctl(['apply', '-f', fileB], fake('load-then-fail'));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/No buffer space available/);
    expect(result.stderr).toMatch(/restored and verified/);
    expect(natctlLines(await save())).toBe(rulesA);
    expect(otherLines(await save())).toBe(others);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe('ERR ECONNREFUSED');
  });

  it('SIGKILL mid-apply leaves every table whole (old or new) and the next apply repairs it', async () => {
    const child = execa(process.execPath, [join(repoRoot, 'dist/cli/main.js'), '--netns', box.host, '--state-dir', box.stateDir, 'apply', '-f', fileB, '--backend', 'iptables-legacy'], {
      env: fake('slow', { FAKE_DELAY: '1' }), reject: false,
    });
    // Kill while a restore file exists, i.e. while a table's restore is under way.
    const tmp = join(box.stateDir, 'netns', box.host, 'tmp');
    const deadline = Date.now() + 10_000;
    const restoring = async (): Promise<boolean> => (await readdir(tmp).catch(() => [] as string[])).some((n) => n.startsWith('natctl-'));
    while (Date.now() < deadline && !(await restoring())) await new Promise((r) => setTimeout(r, 20));
    expect(await restoring()).toBe(true);
    child.kill('SIGKILL');
    await child;
    await new Promise((r) => setTimeout(r, 1500)); // the orphaned restore may still commit its table
    const tablesOf = (text: string): string[] => text.split(/^(?=\*)/m);
    const now = tablesOf(natctlLines(await save()));
    const a = tablesOf(rulesA);
    const b = tablesOf(rulesB);
    now.forEach((table, i) => expect([a[i], b[i]]).toContain(table));
    expect(otherLines(await save())).toBe(others);
    const next = await natctl(['apply', '-f', fileA, '--lock-timeout', '5']);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(natctlLines(await save())).toBe(rulesA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('four concurrent applies of two configs serialize and end in one whole, recorded ruleset', async () => {
    const runs = await Promise.all([fileA, fileB, fileA, fileB].map((file) => natctl(['apply', '-f', file, '--json'])));
    for (const run of runs) expect(run.exitCode, run.stderr).toBe(0);
    const final = natctlLines(await save());
    expect([rulesA, rulesB]).toContain(final);
    const status = await natctl(['status', '--json']);
    expect(status.exitCode).toBe(0);
    expect(JSON.parse(status.stdout).drift.drifted).toBe(false);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`${final === rulesA ? 'c1' : 'c2'} ${addr.ext} 80`);
    expect((await natctl(['apply', '-f', fileA])).exitCode).toBe(0);
  });

  it('status reports drift with exit 6 (a rule removed, a rule added, the FORWARD jump no longer first), and apply repairs it', async () => {
    await ipt('iptables-legacy', ['-t', 'nat', '-D', 'NATCTL-DNAT-TCP', '1']);
    await ipt('iptables-legacy', ['-A', 'NATCTL-FORWARD', '-p', 'tcp', '--dport', '9', '-j', 'DROP']);
    await ipt('ip6tables-legacy', ['-I', 'FORWARD', '1', '-p', 'tcp', '--dport', '2226', '-j', 'ACCEPT']);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe('ERR ECONNREFUSED');
    const drifted = await natctl(['status', '--json']);
    expect(drifted.exitCode).toBe(6);
    const drift = JSON.parse(drifted.stdout).drift as { missing: string[]; extra: string[] };
    expect(drift.missing.join('\n')).toContain('natctl mapping web ');
    expect(drift.missing.join('\n')).toContain('ipv6 filter jump FORWARD (first)');
    expect(drift.extra.join('\n')).toContain('--dport 9 -j DROP');
    const plan = await natctl(['plan', '-f', fileA]);
    expect(plan.stdout).toContain('the live ruleset differs from the last apply');
    const repaired = await natctl(['apply', '-f', fileA, '--json']);
    expect(repaired.exitCode, repaired.stderr).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ changed: true, repairedDrift: true });
    expect(natctlLines(await save())).toBe(rulesA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await natctl(['status'])).exitCode).toBe(0);
    expect((await natctl(['plan', '-f', fileA])).stdout).not.toContain('differs');
    // The operator's own rule stays, now after natctl's jump.
    const forward6 = (await box.exec(box.host, 'ip6tables-legacy-save', ['-t', 'filter'])).stdout.split('\n').filter((l) => l.startsWith('-A FORWARD'));
    expect(forward6.slice(0, 2)).toEqual(['-A FORWARD -j NATCTL-FORWARD', '-A FORWARD -p tcp -m tcp --dport 2226 -j ACCEPT']);
    await ipt('ip6tables-legacy', ['-D', 'FORWARD', '-p', 'tcp', '--dport', '2226', '-j', 'ACCEPT']);
  });

  it('rollback re-applies the previous generation through the verified path, leaving other rules alone', async () => {
    expect((await natctl(['apply', '-f', fileB])).exitCode).toBe(0);
    expect(natctlLines(await save())).toBe(rulesB);
    const rolled = await natctl(['rollback']);
    expect(rolled.exitCode, rolled.stderr).toBe(0);
    expect(natctlLines(await save())).toBe(rulesA);
    expect(otherLines(await save())).toBe(others);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('when the restore fails too, exits 5 and tells the operator what to run', async () => {
    const result = await natctl(['apply', '-f', fileB], fake('break'));
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toMatch(/restoring the previous ruleset failed/);
    expect(result.stderr).toMatch(/natctl rollback/);
    const history = JSON.parse((await box.natctl(['history', '--json'])).stdout) as { generation: number; mappings: number; kind: string }[];
    const lastA = history.filter((g) => g.kind === 'apply' && g.mappings === configA.mappings.length).map((g) => g.generation).pop();
    expect((await natctl(['rollback', '--to', String(lastA)])).exitCode).toBe(0);
    expect(natctlLines(await save())).toBe(rulesA);
  });

  it("flush removes natctl's chains and jumps and nothing else: the tables are as they were before natctl", async () => {
    const flushed = await natctl(['flush']);
    expect(flushed.exitCode, flushed.stderr).toBe(0);
    const after = await save();
    expect(after).not.toContain('NATCTL');
    expect(after).toBe(others);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe('ERR ECONNREFUSED');
    expect((await natctl(['flush'])).exitCode).toBe(0);
    expect(await save()).toBe(others);
  });
});
