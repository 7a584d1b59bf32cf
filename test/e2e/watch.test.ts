// natctl watch, the node agent (issue 10), on a real kernel: natctl watch runs inside the
// sandbox's host namespace (`ip netns exec HOST natctl --netns HOST watch ...`, so its HTTP
// server on 127.0.0.1 lives in that namespace, never in the root one). Fragments come and go
// in a drop-in directory; every claim is checked by packets from the outside namespace, by
// /healthz and /metrics, by the kernel's ruleset and by the agent's JSON log lines.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, addr, e2eEnabled, repoRoot } from '../helpers/topology.js';

const enabled = e2eEnabled();
const cli = join(repoRoot, 'dist/cli/main.js');
const resyncSeconds = 3;
/** Generous bound for "appears/disappears": debounce + minimum interval + an apply on a busy 2-core machine. */
const boundMs = 30_000;

interface LogLine {
  time: string;
  durationMs?: number;
  event: string;
  msg: string;
  trigger?: string;
  kind?: string;
  ok?: boolean;
  reason?: string;
  mappings?: number;
  driftRepaired?: boolean;
  listen?: string;
  error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until `accept` holds or `timeoutMs` passes; returns the last value either way. */
async function until<T>(probe: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = boundMs): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value) || Date.now() > deadline) return value;
    await sleep(200);
  }
}

describe.runIf(enabled)('natctl watch (node agent) in a sandbox', () => {
  const box = new Sandbox('watch');
  let dir = '';
  let agent: ResultPromise | undefined;
  let agentPid: number | undefined;
  let exit: Promise<{ exitCode: number | undefined }> | undefined;
  const logs: LogLine[] = [];
  let port = 0;

  /** Writes a fragment the way a provisioning agent should: a hidden temp file, then rename. */
  const put = async (name: string, content: unknown): Promise<void> => {
    const temp = join(dir, `.${name}.tmp`);
    await writeFile(temp, typeof content === 'string' ? content : JSON.stringify(content));
    await rename(temp, join(dir, name));
  };
  const mapping = (name: string, hostPort: number, target: string): unknown => ({ version: 1, mappings: [{ name, network: 'lab0', hostPort, target: `${target}:80` }] });
  const fromExt = (port: number): Promise<string> => box.connect(box.ext, 'tcp', addr.hostUp, port);
  const http = async (path: string): Promise<{ status: number; body: string }> => {
    const result = await box.exec(box.host, 'curl', ['-s', '-m', '5', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`]);
    const lines = result.stdout.split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n') };
  };
  const syncs = (): LogLine[] => logs.filter((l) => l.event === 'sync');

  beforeAll(async () => {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    dir = join(box.workDir, 'natctl.d');
    await mkdir(dir);
    await put('00-network.json', { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }] });
    agent = execa('ip', ['netns', 'exec', box.host, process.execPath, cli, '--netns', box.host, '--state-dir', box.stateDir, 'watch', '-f', dir,
      '--resync', String(resyncSeconds), '--listen', '127.0.0.1:0', '--log-format', 'json', '--mapping-metrics'], { reject: false, stdin: 'ignore', buffer: false });
    // `ip netns exec` execs node in place: this pid is natctl's own.
    agentPid = agent.pid;
    exit = agent.then((r) => ({ exitCode: r.exitCode }));
    let partial = '';
    agent.stderr?.on('data', (chunk: Buffer) => {
      partial += chunk.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
    });
    const started = await until(async () => logs.find((l) => l.event === 'start'), (l) => l !== undefined, 20_000);
    port = Number(started?.listen?.split(':').pop());
    expect(port).toBeGreaterThan(0);
  });

  afterAll(async () => {
    if (agentPid !== undefined) {
      try {
        process.kill(agentPid, 'SIGKILL');
      } catch {
        // already stopped
      }
      await exit;
    }
    await box.destroy();
  });

  it('applies the directory at start and reports healthy', async () => {
    const health = await until(() => http('/healthz'), (h) => h.status === 200);
    expect(health.status, health.body).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ healthy: true, status: 'ok' });
    expect(syncs()[0]).toMatchObject({ trigger: 'start', kind: 'full', mappings: 0 });
    expect(await box.nft(['list', 'table', 'inet', 'natctl'])).toContain('table inet natctl');
  });

  it('a fragment added serves, and stops serving when removed', async () => {
    expect(await fromExt(8080)).toBe('ERR ECONNREFUSED');
    await put('web.json', mapping('web', 8080, addr.c1));
    expect(await until(() => fromExt(8080), (r) => r.startsWith('c1'))).toBe(`c1 ${addr.ext} 80`);
    await put('api.yaml', `version: 1\nmappings:\n  - name: api\n    network: lab0\n    hostPort: 8081\n    target: ${addr.c2}:80\n`);
    expect(await until(() => fromExt(8081), (r) => r.startsWith('c2'))).toBe(`c2 ${addr.ext} 80`);
    await rm(join(dir, 'api.yaml'));
    expect(await until(() => fromExt(8081), (r) => r.startsWith('ERR'))).toBe('ERR ECONNREFUSED');
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('a broken fragment keeps the last good rules serving and turns /healthz and /metrics red, naming the file', async () => {
    await put('broken.yaml', 'version: 1\nmappings:\n  - name: broken\n    hostPort: 99999\n    target: 198.18.0.2:80\n');
    const health = await until(() => http('/healthz'), (h) => h.status === 503);
    expect(health.status).toBe(503);
    const body = JSON.parse(health.body) as { status: string; reason: string; error: string };
    expect(body.status).toBe('failing');
    expect(body.error).toContain(join(dir, 'broken.yaml'));
    expect(body.error).toContain('hostPort');
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
    const metrics = (await http('/metrics')).body;
    expect(metrics).toContain('natctl_config_valid 0');
    expect(metrics).toMatch(/natctl_sync_failures_total\{reason="config"\} [1-9]/);
    expect(logs.some((l) => l.event === 'config' && l.error?.includes('broken.yaml'))).toBe(true);
    // A conflict between two fragments is bad input too: nothing from it reaches the kernel.
    await rm(join(dir, 'broken.yaml'));
    await put('clash.json', mapping('clash', 8080, addr.c2));
    const clash = await until(() => http('/healthz'), (h) => h.status === 503 && h.body.includes('clash.json'));
    expect(clash.body).toContain('web.json');
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
    await rm(join(dir, 'clash.json'));
    expect((await until(() => http('/healthz'), (h) => h.status === 200)).status).toBe(200);
    expect((await http('/metrics')).body).toContain('natctl_config_valid 1');
  });

  it('serves per-mapping counters on /metrics with --mapping-metrics', async () => {
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
    const metrics = await until(() => http('/metrics'), (m) => /natctl_mapping_connections_total\{mapping="web"\} [1-9]/.test(m.body), 20_000);
    expect(metrics.body).toMatch(/natctl_mapping_connections_total\{mapping="web"\} [1-9]/);
    expect(metrics.body).toMatch(/natctl_mappings_managed 1/);
  });

  it("repairs natctl's table deleted behind its back at the next resync", async () => {
    await box.nft(['delete', 'table', 'inet', 'natctl']);
    const deletedAt = Date.now();
    // The first resync that started after the deletion is the one that must repair it.
    const startedAfter = (s: LogLine): boolean => s.trigger === 'resync' && Date.parse(s.time) - (s.durationMs ?? 0) > deletedAt;
    const repaired = await until(async () => syncs().find(startedAfter), (s) => s !== undefined, (resyncSeconds + 30) * 1000);
    expect(repaired).toMatchObject({ trigger: 'resync', kind: 'full', driftRepaired: true });
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
    expect((await http('/metrics')).body).toMatch(/natctl_drift_repairs_total [1-9]/);
  });

  it('coalesces 1,000 fragment writes into few applies and ends in exactly the written state', async () => {
    const before = syncs().length;
    const started = Date.now();
    for (let i = 0; i < 1000; i++) await put(`flood-${String(i).padStart(4, '0')}.json`, mapping(`flood-${i}`, 20000 + i, addr.c2));
    const writeMs = Date.now() - started;
    const settled = await until(async () => syncs().slice(before), (s) => s.some((l) => l.mappings === 1001), 120_000);
    await sleep(3000); // let a trailing sync (if any) land in the log
    const flood = syncs().slice(before).filter((s) => s.trigger !== 'resync' && s.trigger !== 'retry');
    expect(settled.some((l) => l.mappings === 1001), JSON.stringify(settled)).toBe(true);
    expect(flood.length, `writes took ${writeMs} ms; syncs: ${JSON.stringify(flood.map((s) => [s.trigger, s.mappings]))}`).toBeGreaterThan(0);
    expect(flood.length).toBeLessThanOrEqual(20);
    const plan = await box.natctl(['plan', '-f', dir, '--json']);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout)).toMatchObject({ changes: [], drift: false });
    for (const port of [20000, 20500, 20999]) expect(await fromExt(port)).toBe(`c2 ${addr.ext} 80`);
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('SIGHUP forces a re-read', async () => {
    const before = syncs().length;
    process.kill(agentPid!, 'SIGHUP');
    const hup = await until(async () => syncs().slice(before).find((s) => s.trigger === 'signal'), (s) => s !== undefined, 20_000);
    expect(hup).toMatchObject({ trigger: 'signal', kind: 'noop' });
    // The lock is the engine's, held during a sync only: right after one, nobody holds it.
    expect(existsSync(join(box.stateDir, 'netns', box.host, 'lock'))).toBe(false);
  });

  it("an operator's manual apply serializes with the agent, and the next resync restores the desired state", async () => {
    const manual = await box.writeConfig('manual.json', { version: 1, mappings: [{ name: 'manual', hostPort: 8090, target: `${addr.c1}:80` }] });
    const applied = await box.natctl(['apply', '-f', manual]);
    expect(applied.exitCode, applied.stderr).toBe(0);
    const appliedAt = Date.now();
    const restored = await until(async () => syncs().find((s) => s.trigger === 'resync' && Date.parse(s.time) - (s.durationMs ?? 0) > appliedAt), (s) => s !== undefined, (resyncSeconds + 60) * 1000);
    expect(restored).toMatchObject({ kind: 'full', mappings: 1001 });
    expect(await fromExt(8090)).toBe('ERR ECONNREFUSED');
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
  });

  it('SIGTERM stops it cleanly: the rules stay and the lock is released', async () => {
    process.kill(agentPid!, 'SIGTERM');
    const result = await exit!;
    agentPid = undefined;
    expect(result.exitCode).toBe(0);
    expect(logs.at(-1)).toMatchObject({ event: 'stop', msg: 'stopped' });
    expect(await fromExt(8080)).toBe(`c1 ${addr.ext} 80`);
    expect(await fromExt(20999)).toBe(`c2 ${addr.ext} 80`);
    expect(existsSync(join(box.stateDir, 'netns', box.host, 'lock'))).toBe(false);
    // A manual apply right after does not wait for any lock.
    const apply = await box.natctl(['--lock-timeout', '0', 'apply', '-f', dir, '--json']);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(JSON.parse(apply.stdout)).toMatchObject({ changed: false });
  });
});
