// The CLI's contract: verbs, flags, environment variables and exit codes (docs/contract.md §4), for
// everything that needs no kernel. Kernel paths are covered by test/e2e.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, repoRoot } from '../helpers/topology.js';

const cli = join(repoRoot, 'dist/cli/main.js');
/** Whether uid 65534 (nobody) can run the built CLI from this checkout (not when it lies under /root). */
const nobodyCanRun = isRoot() && spawnSync(process.execPath, [cli, '--version'], { uid: 65534, gid: 65534 }).status === 0;

describe('natctl CLI', () => {
  let dir = '';
  let good = '';
  let bad = '';
  const run = (args: string[], env: Record<string, string> = {}) => execa(process.execPath, [cli, ...args], { reject: false, env: { NO_COLOR: '1', ...env } });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-cli-'));
    good = join(dir, 'good.yaml');
    bad = join(dir, 'bad.yaml');
    await writeFile(good, 'version: 1\nmappings:\n  - name: web\n    publish: "8080:80"\n    target: 198.18.0.2\n');
    await writeFile(bad, 'version: 1\nmappings:\n  - hostPort: 8080\n    target: 198.18.0.300\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('renders nft JSON by default and nft text on request, without root', async () => {
    const json = await run(['render', '-f', good]);
    expect(json.exitCode).toBe(0);
    expect(JSON.parse(String(json.stdout)).nftables[0]).toEqual({ add: { table: { family: 'inet', name: 'natctl' } } });
    const text = await run(['render', '-f', good, '--format', 'nft']);
    expect(String(text.stdout)).toMatch(/^table inet natctl \{/);
  });

  it('exits 2 on an invalid config, naming the field and the value', async () => {
    const result = await run(['render', '-f', bad]);
    expect(result.exitCode).toBe(2);
    expect(String(result.stderr)).toContain('mappings[0].target: "198.18.0.300"');
    expect(String(result.stderr).split('\n').length).toBeLessThan(5);
  });

  it('reports errors as JSON with --json', async () => {
    const result = await run(['apply', '-f', bad, '--json']);
    expect(result.exitCode).toBe(2);
    const error = JSON.parse(String(result.stdout)).error;
    expect(error).toMatchObject({ type: 'ConfigError', exitCode: 2 });
    expect(error.problems[0].path).toBe('mappings[0].target');
  });

  it('exits 2 on usage errors and unknown verbs, 0 on --help', async () => {
    expect((await run(['frobnicate'])).exitCode).toBe(2);
    expect((await run(['apply'])).exitCode).toBe(2);
    expect((await run(['render', '-f', good, '--format', 'yaml'])).exitCode).toBe(2);
    expect((await run(['rollback', '--to', 'abc'])).exitCode).toBe(2);
    expect((await run(['--help'])).exitCode).toBe(0);
  });

  it('exits 3 for an environment problem (missing netns), 2 for an unknown backend', async () => {
    const netns = await run(['--netns', 'nc-does-not-exist', 'status']);
    expect(netns.exitCode).toBe(3);
    expect(String(netns.stderr)).toContain('ip netns add nc-does-not-exist');
    const iptables = await run(['--netns', 'nc-does-not-exist', 'apply', '-f', good, '--backend', 'iptables-legacy', '--state-dir', join(dir, 's')]);
    expect(iptables.exitCode).toBe(3);
    const unknown = await run(['apply', '-f', good, '--backend', 'pf', '--state-dir', join(dir, 's')]);
    expect(unknown.exitCode).toBe(2);
  });

  it('history, which reads the state dir without the engine, refuses what the engine refuses', async () => {
    const netns = await run(['--netns', 'nc-does-not-exist', 'history']);
    expect(netns.exitCode).toBe(3);
    expect(String(netns.stderr)).toContain('ip netns add nc-does-not-exist');
    const empty = await run(['history', '--state-dir', '']);
    expect(empty.exitCode).toBe(2);
    expect(String(empty.stderr)).toContain('--state-dir is empty');
    const none = await run(['history'], { NATCTL_STATE_DIR: join(dir, 'no-history') });
    expect(none.exitCode).toBe(0);
    expect(String(none.stdout)).toBe('no generations recorded');
  });

  it('renders iptables restore input for both families and tables without root or kernel', async () => {
    const result = await run(['render', '-f', good, '--format', 'iptables']);
    expect(result.exitCode).toBe(0);
    const text = String(result.stdout);
    expect(text.match(/^\*(nat|filter)$/gm)).toEqual(['*nat', '*filter', '*nat', '*filter']);
    expect(text).toContain('-j DNAT --to-destination 198.18.0.2:80');
    const dry = await run(['apply', '-f', good, '--backend', 'iptables-legacy', '--dry-run', '--json', '--state-dir', join(dir, 'dry')]);
    expect(dry.exitCode).toBe(0);
    expect(JSON.parse(String(dry.stdout))).toMatchObject({ dryRun: true, changed: true });
  });

  it('plans and dry-runs without touching anything, using NATCTL_STATE_DIR', async () => {
    const state = join(dir, 'env-state');
    const plan = await run(['plan', '-f', good], { NATCTL_STATE_DIR: state });
    expect(plan.exitCode).toBe(0);
    expect(String(plan.stdout)).toContain('+ mapping web tcp *:8080 -> 198.18.0.2:80');
    const dry = await run(['apply', '-f', good, '--dry-run', '--json'], { NATCTL_STATE_DIR: state });
    expect(dry.exitCode).toBe(0);
    expect(JSON.parse(String(dry.stdout))).toMatchObject({ dryRun: true, changed: true });
    const history = await run(['history', '--json'], { NATCTL_STATE_DIR: state });
    expect(JSON.parse(String(history.stdout))).toEqual([]);
  });

  it('prints exactly one JSON document on stdout for every --json run, usage errors included', async () => {
    const cases: [string[], number][] = [
      [['apply', '--json'], 2],
      [['frobnicate', '--json'], 2],
      [['--json'], 2],
      [['apply', '-f', good, '--backend', 'bogus', '--json'], 2],
      [['--lock-timeout', 'abc', 'status', '--json'], 2],
      [['status', '--lock-timeout', 'abc', '--json'], 2],
      [['rollback', '--to', 'abc', '--json'], 2],
      [['render', '-f', good, '--format', 'yaml', '--json'], 2],
      [['render', '-f', bad, '--json'], 2],
      [['render', '-f', good, '--format', 'nft', '--json'], 0],
      [['--help', '--json'], 0],
      [['-V', '--json'], 0],
    ];
    for (const [args, code] of cases) {
      const result = await run(args);
      expect(result.exitCode, args.join(' ')).toBe(code);
      const document = JSON.parse(String(result.stdout)) as { error?: { type: string; exitCode: number; message: string } };
      if (code !== 0) expect(document.error, args.join(' ')).toMatchObject({ exitCode: code });
    }
    const backend = JSON.parse(String((await run(['apply', '-f', good, '--backend', 'bogus', '--json'])).stdout));
    expect(backend.error.message).toContain('bogus');
    const nft = JSON.parse(String((await run(['render', '-f', good, '--format', 'nft', '--json'])).stdout));
    expect(nft.ruleset).toMatch(/^table inet natctl \{/);
  }, 180_000);

  it('exits 2 with usage when run without a command', async () => {
    const result = await run([]);
    expect(result.exitCode).toBe(2);
    expect(String(result.stderr)).toContain('Usage: natctl');
    expect(String(result.stdout)).toBe('');
  });

  it.runIf(nobodyCanRun)('exits 3, not "unexpected error", when a non-root user cannot read the state dir', async () => {
    const state = join(dir, 'root-only');
    await mkdir(join(state, 'sub'), { recursive: true });
    await chmod(state, 0o700);
    await chmod(dir, 0o755);
    // uid/gid 65534 (nobody) must be able to run the CLI, but not enter the state dir.
    const asNobody = (args: string[]) => execa(process.execPath, [cli, ...args], { reject: false, uid: 65534, gid: 65534, env: { NO_COLOR: '1' } });
    const history = await asNobody(['history', '--state-dir', join(state, 'sub')]);
    expect(history.exitCode).toBe(3);
    expect(String(history.stderr)).toMatch(/permission denied.*EACCES/);
    expect(String(history.stderr)).not.toContain('unexpected error');
    const plan = await asNobody(['plan', '-f', good, '--state-dir', state, '--json']);
    expect(plan.exitCode).toBe(3);
    expect(JSON.parse(String(plan.stdout)).error).toMatchObject({ type: 'EnvironmentError', exitCode: 3 });
  });

  it.runIf(isRoot())('a failing nft command is a typed error (exit 3) for status and flush, not "unexpected error"', async () => {
    // A stand-in nft that fails every call: nothing reaches the kernel.
    const nft = join(dir, 'failing-nft');
    await writeFile(nft, '#!/bin/sh\necho "Error: Could not receive answer from kernel" >&2\nexit 1\n', { mode: 0o755 });
    const env = { NATCTL_NFT: nft, NATCTL_NATIVE: '0' };
    for (const verb of ['status', 'flush']) {
      // --backend nft: with auto, a failing nft would make natctl choose iptables-legacy.
      const text = await run([verb, '--backend', 'nft', '--state-dir', join(dir, `fail-${verb}`)], env);
      expect(text.exitCode, verb).toBe(3);
      expect(String(text.stderr)).toContain('Could not receive answer');
      expect(String(text.stderr)).not.toContain('unexpected error');
      const json = await run([verb, '--json', '--backend', 'nft', '--state-dir', join(dir, `fail-${verb}`)], env);
      expect(json.exitCode, verb).toBe(3);
      expect(JSON.parse(String(json.stdout)).error).toMatchObject({ type: 'BackendFailure', exitCode: 3 });
    }
  });

  it('prints the JSON Schema', async () => {
    const schema = JSON.parse(String((await run(['schema'])).stdout));
    expect(schema.properties.mappings.type).toBe('array');
    expect(schema.additionalProperties).toBe(false);
  });
});
