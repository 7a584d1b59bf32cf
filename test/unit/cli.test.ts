// The CLI's contract: verbs, flags, environment variables and exit codes (DESIGN §4), for
// everything that needs no kernel. Kernel paths are covered by test/e2e.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/topology.js';

const cli = join(repoRoot, 'dist/cli/main.js');

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

  it('prints the JSON Schema', async () => {
    const schema = JSON.parse(String((await run(['schema'])).stdout));
    expect(schema.properties.mappings.type).toBe('array');
    expect(schema.additionalProperties).toBe(false);
  });
});
