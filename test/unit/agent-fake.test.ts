// The whole agent (watcher, loop, reconciler, HTTP) against the engine with the fake backend:
// no kernel, no root. A config file replaced by rename is seen; a broken one is reported on
// /healthz and /metrics and never loaded; a drifted "kernel" is repaired by a resync; stop()
// ends run(). HTTP listens on 127.0.0.1 with an ephemeral port.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { createLogger } from '../../src/agent/log.js';
import { FakeBackend } from '../../src/backends/fake.js';
import { Controller } from '../../src/engine/controller.js';

interface Line {
  event: string;
  trigger?: string;
  kind?: string;
  reason?: string;
  mappings?: number;
  driftRepaired?: boolean;
}

const get = (port: number, path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });

async function until<T>(probe: () => T | Promise<T>, accept: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const config = (ports: number[]): string => `version: 1\nmappings:\n${ports.map((p) => `  - name: m${p}\n    hostPort: ${p}\n    target: 198.18.0.2:80\n`).join('')}`;

describe('agent with the fake backend', () => {
  let dir = '';
  let file = '';
  let backend: FakeBackend;
  let agent: Agent;
  let running: Promise<void>;
  const lines: Line[] = [];
  const syncs = (): Line[] => lines.filter((l) => l.event === 'sync');

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-agent-'));
    file = join(dir, 'natctl.yaml');
    await writeFile(file, config([8080]));
    backend = new FakeBackend();
    const controller = await Controller.open({ backend, stateDir: join(dir, 'state'), requireRoot: false });
    lines.length = 0;
    agent = new Agent({
      controller,
      path: file,
      logger: createLogger('json', (line) => void lines.push(JSON.parse(line) as Line)),
      timing: { debounceMs: 20, maxDelayMs: 200, minIntervalMs: 0, resyncMs: 500 },
      listen: { host: '127.0.0.1', port: 0 },
      signals: false,
    });
    running = agent.run();
    await until(() => syncs().length, (n) => n > 0);
  });
  afterEach(async () => {
    await agent.stop();
    await running;
    await rm(dir, { recursive: true, force: true });
  });

  it('applies at start, then a file replaced by rename, and reports healthy', async () => {
    expect(syncs()[0]).toMatchObject({ trigger: 'start', kind: 'full', mappings: 1 });
    await writeFile(join(dir, '.natctl.yaml.tmp'), config([8080, 8081]));
    await rename(join(dir, '.natctl.yaml.tmp'), file);
    const synced = await until(() => syncs().find((s) => s.mappings === 2), (s) => s !== undefined);
    expect(synced).toMatchObject({ kind: 'full', mappings: 2 });
    expect(backend.live?.raw).toContain('m-m8081');
    const health = await get(agent.port!, '/healthz');
    expect(health.status).toBe(200);
  });

  it('never loads a broken file: /healthz 503 naming the problem, metrics count it, the last good state stays', async () => {
    const loads = backend.loads;
    const good = backend.live?.raw;
    await writeFile(file, config([70000]));
    const health = await until(() => get(agent.port!, '/healthz'), (h) => h.status === 503);
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body)).toMatchObject({ healthy: false, status: 'failing' });
    expect(health.body).toContain('hostPort');
    expect(backend.loads).toBe(loads);
    expect(backend.live?.raw).toBe(good);
    const metrics = await get(agent.port!, '/metrics');
    expect(metrics.body).toContain('natctl_config_valid 0');
    expect(metrics.body).toMatch(/natctl_config_errors_total [1-9]/);
    expect((await get(agent.port!, '/nope')).status).toBe(404);
  });

  it('repairs drift at a resync, also while the file is broken (from the last good config)', async () => {
    backend.live = null; // the table was deleted behind natctl's back
    const repaired = await until(() => syncs().find((s) => s.trigger === 'resync' && s.driftRepaired), (s) => s !== undefined);
    expect(repaired).toMatchObject({ kind: 'full', driftRepaired: true });
    expect(backend.live?.raw).toContain('m-m8080');
    await writeFile(file, 'version: 1\nmappings: [');
    await until(() => syncs().at(-1), (s) => s?.reason === 'config');
    backend.live = null;
    await until(() => lines.find((l) => l.event === 'repair'), (l) => l !== undefined);
    expect(backend.live?.raw).toContain('m-m8080');
  });
});
