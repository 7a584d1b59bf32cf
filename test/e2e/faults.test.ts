// Applies you can trust (issue 3): a refused load, a load that reports failure after loading,
// SIGKILL in the middle of an apply, and concurrent applies, each on the real kernel, each
// followed by a look at the kernel's ruleset (counters stripped) and by traffic.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const fakeNft = join(repoRoot, 'test/helpers/fake-nft.sh');

const configA = { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80` }] };
const configB = { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c2}:80` }, { name: 'extra', hostPort: 8081, target: `${addr.c2}:80` }] };

describe.runIf(enabled)('fault injection on a real kernel', () => {
  const box = new Sandbox('fault');
  let fileA = '';
  let fileB = '';
  let realNft = '';
  let rulesetA = '';
  let rulesetB = '';

  /** natctl's table as the kernel holds it, without handles and counters. */
  const live = async (): Promise<string> => {
    const result = await box.exec(box.host, 'nft', ['list', 'table', 'inet', 'natctl']);
    return result.exitCode === 0 ? result.stdout.replace(/counter packets \d+ bytes \d+/g, 'counter') : '<none>';
  };
  const env = (mode: string, extra: Record<string, string> = {}): Record<string, string> => ({
    NATCTL_NFT: fakeNft, REAL_NFT: realNft, FAKE_NFT_MODE: mode, FAKE_NFT_STATE: box.workDir, NATCTL_NATIVE: '0', ...extra,
  });
  /** natctl writes its batch files under STATE/tmp (see NftBackend.tempDir). */
  const tmp = (): string => join(box.stateDir, 'netns', box.host, 'tmp');
  /** The newest generation that applied `file`'s config. */
  const lastApplyOf = async (file: string): Promise<number> => {
    const history = JSON.parse((await box.natctl(['history', '--json'])).stdout) as { generation: number; hash: string; mappings: number }[];
    const wanted = file === fileA ? configA.mappings.length : configB.mappings.length;
    return history.filter((g) => g.mappings === wanted).map((g) => g.generation).pop() ?? 0;
  };
  /** natctl's private temp dirs (0700, files 0600) are gone after every apply, failed or not. */
  const expectNoTempFiles = async (): Promise<void> => expect(await readdir(tmp()).catch(() => [])).toEqual([]);

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    realNft = String((await execa('sh', ['-c', 'command -v nft'])).stdout).trim();
    fileA = await box.writeConfig('a.json', configA);
    fileB = await box.writeConfig('b.json', configB);
    expect((await box.natctl(['apply', '-f', fileB])).exitCode).toBe(0);
    rulesetB = await live();
    expect((await box.natctl(['apply', '-f', fileA])).exitCode).toBe(0);
    rulesetA = await live();
    expect(rulesetA).not.toBe(rulesetB);
  });
  afterAll(() => box.destroy());

  it('a refused load exits 1, says the previous ruleset is in place, and it is', async () => {
    const result = await box.natctl(['apply', '-f', fileB], env('refuse'));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/Operation not supported/);
    expect(result.stderr).toMatch(/previous ruleset is still in place/);
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    await expectNoTempFiles();
  });

  it('a missing nft binary is an environment error (exit 3) for apply and status, never "no ruleset"', async () => {
    const missing = { NATCTL_NFT: join(box.workDir, 'no-such-nft') };
    const applied = await box.natctl(['apply', '-f', fileB], missing);
    expect(applied.exitCode).toBe(3);
    expect(applied.stderr).toContain('not found');
    // Through nft (status can also read over netlink, which needs no nft: test/e2e/status.test.ts).
    const status = await box.natctl(['status', '--json'], { ...missing, NATCTL_NETLINK: '0' });
    expect(status.exitCode).toBe(3);
    expect(await live()).toBe(rulesetA);
  });

  it('a refused load names the mapping the kernel objects to', async () => {
    const result = await box.natctl(['apply', '-f', fileB], env('', { FAKE_NFT_REFUSE: 'comment "extra"' }));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('the kernel refuses mapping "extra" (mappings[1])');
    expect(await live()).toBe(rulesetA);
    await expectNoTempFiles();
  });

  it('a load that reports failure after loading is rolled back to the previous ruleset', async () => {
    const result = await box.natctl(['apply', '-f', fileB], env('load-then-fail'));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/No buffer space available/);
    expect(result.stderr).toMatch(/restored and verified/);
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe('ERR ECONNREFUSED');
    const history = JSON.parse((await box.natctl(['history', '--json'])).stdout) as unknown[];
    expect(history).toHaveLength(2);
    await expectNoTempFiles();
  });

  it('SIGKILL in the middle of an apply leaves the whole old or the whole new ruleset, and the next apply succeeds', async () => {
    const child = execa(process.execPath, [join(repoRoot, 'dist/cli/main.js'), '--netns', box.host, '--state-dir', box.stateDir, 'apply', '-f', fileB], {
      env: env('slow', { FAKE_NFT_DELAY: '1' }), reject: false,
    });
    const seen = new Set<string>();
    // Kill in the middle of the load: the lock is held and the batch file exists (the fake
    // nft sleeps before loading it).
    const lockFile = join(box.stateDir, 'netns', box.host, 'lock');
    const batchWritten = async (): Promise<boolean> => (await readdir(tmp()).catch(() => [] as string[])).some((n) => n.startsWith('natctl-'));
    const deadline = Date.now() + 10_000;
    while (!(await batchWritten()) && Date.now() < deadline) seen.add(await live());
    expect(await batchWritten()).toBe(true);
    expect(existsSync(lockFile)).toBe(true);
    seen.add(await live());
    child.kill('SIGKILL');
    await child;
    // The orphaned nft may still commit its batch: watch the kernel until it settles.
    for (let i = 0; i < 20; i++) {
      seen.add(await live());
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const state of seen) expect([rulesetA, rulesetB]).toContain(state);
    // SIGKILL runs no cleanup: the killed apply's batch file is still there...
    expect((await readdir(tmp())).filter((n) => n.startsWith('natctl-'))).toHaveLength(1);
    const next = await box.natctl(['apply', '-f', fileA, '--lock-timeout', '5']);
    expect(next.exitCode).toBe(0);
    // ...until the next apply, holding the lock, sweeps it.
    await expectNoTempFiles();
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('four concurrent applies of two configs serialize and end in one whole, recorded ruleset', async () => {
    const runs = await Promise.all([fileA, fileB, fileA, fileB].map((file) => box.natctl(['apply', '-f', file, '--json'])));
    for (const run of runs) expect(run.exitCode, run.stderr).toBe(0);
    const final = await live();
    expect([rulesetA, rulesetB]).toContain(final);
    const status = await box.natctl(['status', '--json']);
    expect(status.exitCode).toBe(0);
    expect(JSON.parse(status.stdout).drift.drifted).toBe(false);
    const expected = final === rulesetA ? 'c1' : 'c2';
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`${expected} ${addr.ext} 80`);
  });

  it('status reports drift with exit 6, and apply of the unchanged config repairs it', async () => {
    expect((await box.natctl(['apply', '-f', fileA])).exitCode).toBe(0);
    await box.exec(box.host, 'nft', ['delete', 'chain', 'inet', 'natctl', 'f-web']).catch(() => undefined);
    await box.exec(box.host, 'nft', ['add', 'rule', 'inet', 'natctl', 'forward', 'tcp', 'dport', '9', 'drop']);
    const drifted = await box.natctl(['status', '--json']);
    expect(drifted.exitCode).toBe(6);
    const plan = await box.natctl(['plan', '-f', fileA]);
    expect(plan.stdout).toContain('the live ruleset differs from the last apply');
    expect(plan.stdout).toContain('no changes');
    const drift = JSON.parse(drifted.stdout).drift as { missing: string[]; extra: string[] };
    expect(drift.missing.length + drift.extra.length).toBeGreaterThan(0);
    // The generation marker is still there: a plain apply trusts it (no listing); --verify-full compares (docs/operations.md).
    expect(JSON.parse((await box.natctl(['apply', '-f', fileA, '--json'])).stdout)).toMatchObject({ kind: 'noop' });
    const repaired = await box.natctl(['apply', '-f', fileA, '--verify-full', '--json']);
    expect(repaired.exitCode).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ changed: true, repairedDrift: true });
    expect(await live()).toBe(rulesetA);
    expect((await box.natctl(['status'])).exitCode).toBe(0);
  });

  it('a waiting apply gives up after --lock-timeout with exit 4, naming the holder; the kernel frees the lock of a SIGKILLed holder (issue 7 item 11)', async () => {
    const lockDir = join(box.stateDir, 'netns', box.host);
    // A real holder: a process that takes natctl's lock the way natctl does, then hangs.
    const script = `import { acquireLock } from ${JSON.stringify(join(repoRoot, 'dist/engine/lock.js'))};
      await acquireLock(${JSON.stringify(lockDir)}, 5000); process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`;
    const holder = execa(process.execPath, ['--input-type=module', '-e', script], { reject: false });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout?.on('data', (chunk: Buffer) => (String(chunk).includes('locked') ? resolve() : undefined));
        void holder.then(() => reject(new Error('the lock holder exited')));
      });
      const result = await box.natctl(['apply', '-f', fileB, '--lock-timeout', '1']);
      expect(result.exitCode).toBe(4);
      expect(result.stderr).toContain(`pid ${holder.pid}`);
      expect(await live()).toBe(rulesetA);
    } finally {
      holder.kill('SIGKILL');
      await holder;
    }
    // The holder died without cleaning up (its pid is still in the file): the kernel released its lock.
    expect(await readFile(join(lockDir, 'lock'), 'utf8')).toContain(String(holder.pid));
    expect((await box.natctl(['apply', '-f', fileA, '--lock-timeout', '1'])).exitCode).toBe(0);
    // An empty (truncated) lock file, as a crash between create and write leaves, blocks nobody.
    await writeFile(join(lockDir, 'lock'), '', { mode: 0o600 });
    expect((await box.natctl(['apply', '-f', fileA, '--lock-timeout', '1'])).exitCode).toBe(0);
  });

  it('allow and except lists that nft merges (adjacent prefixes, address runs) verify and apply (issue 7 item 7)', async () => {
    const merged = await box.writeConfig('merged.json', {
      ...configA,
      mappings: [{ name: 'web', hostPort: 8080, target: `${addr.c1}:80`, allow: ['198.18.5.0/25', '198.18.5.128/25', '198.18.7.1', '198.18.7.2', '198.18.7.3', `${addr.ext}`] }],
      block: [{ name: 'x', hostPort: 9999, except: ['198.18.10.0/24', '198.18.11.0/24'] }],
    });
    const applied = await box.natctl(['apply', '-f', merged]);
    expect(applied.exitCode, applied.stderr).toBe(0);
    expect((await box.natctl(['status'])).exitCode).toBe(0);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await box.natctl(['apply', '-f', fileA])).exitCode).toBe(0);
    expect(await live()).toBe(rulesetA);
  });

  it('a load the kernel holds differently (a rewritten DNAT target, same rule count) fails verification, is restored, and is never recorded (issue 7 item 7)', async () => {
    const historyBefore = (await box.natctl(['history', '--json'])).stdout;
    const result = await box.natctl(['apply', '-f', fileB], env('tamper', { FAKE_NFT_TAMPER_TO: `${addr.c1}:80` }));
    expect(result.exitCode, result.stderr).toBe(1);
    // Caught by the delta's read-back (the change is a delta) or by the full verify: both name the element.
    expect(result.stderr).toMatch(/failed verification: .*dnat4.*"web".*198\.18\.0\.3/);
    expect(result.stderr).toMatch(/restored and verified/);
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8081)).toBe('ERR ECONNREFUSED');
    expect((await box.natctl(['history', '--json'])).stdout).toBe(historyBefore);
    expect((await box.natctl(['status'])).exitCode).toBe(0);
  });

  it('a restore that reports failure but did restore is read back: exit 1, not 5 (issue 7 item 10)', async () => {
    const result = await box.natctl(['apply', '-f', fileB], env('fail-after-load'));
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/restored and verified/);
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('objects added to natctl\'s table by hand are put back by a restore (issue 7 item 9)', async () => {
    await box.exec(box.host, 'nft', ['add set inet natctl hand { type ipv4_addr; elements = { 198.18.0.9 } }']);
    await box.exec(box.host, 'nft', ['add counter inet natctl hits']);
    const withHand = await live();
    expect(withHand).toContain('set hand');
    await rm(join(box.workDir, 'failed-once'), { force: true });
    const result = await box.natctl(['apply', '-f', fileB], env('load-then-fail'));
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/restored and verified/);
    // Undone by the inverse delta: the same objects; the generation marker may list after the hand-made ones.
    const objects = (text: string): string[] => text.split(/\n(?=\t(?:set|map|counter|chain) )/).sort();
    expect(objects(await live())).toEqual(objects(withHand));
    // A full apply replaces natctl's table whole, hand-made objects included (a plain one trusts the marker).
    expect((await box.natctl(['apply', '-f', fileA, '--verify-full'])).exitCode).toBe(0);
    expect(await live()).toBe(rulesetA);
  });

  it('a state dir that fills up after a successful load: the previous ruleset is restored, exit 1, no temp file left (issue 7 item 8)', async () => {
    const full = join(box.workDir, 'full-state');
    await mkdir(full, { mode: 0o700 });
    // A 1 MiB tmpfs as the state dir, in a private mount namespace (gone when the command ends).
    const script = [
      'set -u',
      'mount -t tmpfs -o size=1m,mode=0700 natctl-full "$1"',
      '"$2" "$3" --netns "$4" --state-dir "$1" apply -f "$5"',
      'echo "exit=$?"',
      'ls -a "$1/netns/$4"',
    ].join('\n');
    const result = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', full, process.execPath, join(repoRoot, 'dist/cli/main.js'), box.host, fileB], {
      env: env('load-then-fill', { FAKE_NFT_FILL: full }), reject: false,
    });
    expect(result.stdout, result.stderr).toContain('exit=1');
    expect(result.stderr).toMatch(/could not be recorded .*(ENOSPC|no space left)/i);
    expect(result.stderr).toMatch(/restored and verified/);
    expect(result.stdout).not.toMatch(/gen-\d+\.json/);
    expect(result.stdout).not.toMatch(/tmp-\d+/);
    expect(await live()).toBe(rulesetA);
  });

  it('generation temp files left by a writer killed between write and rename are swept (issue 7 item 8)', async () => {
    const dir = join(box.stateDir, 'netns', box.host);
    await writeFile(join(dir, 'gen-00000999.json.tmp-4242'), '{"generation": 9', { mode: 0o600 });
    expect((await box.natctl(['apply', '-f', fileA])).exitCode).toBe(0);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a state dir with a group/other-writable component or a symlink below it, exit 3 (issue 7 item 12)', async () => {
    const root = join(box.workDir, 'unsafe-state');
    const elsewhere = join(box.workDir, 'elsewhere');
    await mkdir(join(root, 'netns'), { recursive: true, mode: 0o700 });
    await mkdir(elsewhere, { mode: 0o700 });
    await chmod(join(root, 'netns'), 0o777);
    await symlink(elsewhere, join(root, 'netns', box.host));
    const run = (): Promise<{ exitCode: number; stderr: string }> =>
      execa(process.execPath, [join(repoRoot, 'dist/cli/main.js'), '--netns', box.host, '--state-dir', root, 'apply', '-f', fileB], { reject: false }) as never;
    const open = await run();
    expect(open.exitCode).toBe(3);
    expect(open.stderr).toMatch(/netns is writable by group or others/);
    await chmod(join(root, 'netns'), 0o700);
    const linked = await run();
    expect(linked.exitCode).toBe(3);
    expect(linked.stderr).toMatch(/is a symlink/);
    expect(await readdir(elsewhere)).toEqual([]);
    expect(await live()).toBe(rulesetA);
  });

  it('a corrupt generation blocks neither history, plan nor apply: it is skipped and reported (issue 7 item 13)', async () => {
    const dir = join(box.stateDir, 'netns', box.host);
    const oldest = (await readdir(dir)).filter((n) => /^gen-\d{8}\.json$/.test(n)).sort()[0]!;
    await writeFile(join(dir, oldest), '{"generation": 1, "ti', { mode: 0o600 });
    const history = await box.natctl(['history', '--json']);
    expect(history.exitCode).toBe(0);
    expect(history.stderr).toContain(`is unreadable and was skipped (${join(dir, oldest)}`);
    expect(JSON.parse(history.stdout).length).toBeGreaterThan(0);
    expect((await box.natctl(['plan', '-f', fileB])).exitCode).toBe(0);
    const applied = await box.natctl(['apply', '-f', fileA]);
    expect(applied.exitCode, applied.stderr).toBe(0);
    expect(await live()).toBe(rulesetA);
  });

  it('rollback re-applies the previous generation through the verified path', async () => {
    expect((await box.natctl(['apply', '-f', fileB])).exitCode).toBe(0);
    expect(await live()).toBe(rulesetB);
    const rolled = await box.natctl(['rollback']);
    expect(rolled.exitCode).toBe(0);
    expect(await live()).toBe(rulesetA);
    expect(await box.connect(box.ext, 'tcp', addr.hostUp, 8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('when the restore fails too, exits 5 and tells the operator what to run', async () => {
    await rm(join(box.workDir, 'broken'), { force: true });
    const result = await box.natctl(['apply', '-f', fileB], env('break'));
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toMatch(/restoring the previous ruleset failed/);
    expect(result.stderr).toMatch(/natctl rollback/);
    expect(result.stderr).toMatch(/nft list table inet natctl/);
    // The operator's way out works once the kernel (here: nft) behaves again.
    expect((await box.natctl(['rollback', '--to', String(await lastApplyOf(fileA))])).exitCode).toBe(0);
    expect(await live()).toBe(rulesetA);
  });
});
