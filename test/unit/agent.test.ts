// The node agent's parts that need no kernel: when it syncs (debounce, coalescing, minimum
// interval, resync, retry), what /healthz says, the --listen syntax, the sync kind, and the
// metric names on /metrics. The kernel side is proved in test/e2e/watch.test.ts.
import { describe, expect, it } from 'vitest';
import { assessHealth, overdueAfterMs } from '../../src/agent/health.js';
import { parseListen } from '../../src/agent/http.js';
import { createLogger } from '../../src/agent/log.js';
import { type Clock, SyncLoop } from '../../src/agent/loop.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { failureReason, syncKind, type SyncOutcome, type SyncTrigger } from '../../src/agent/sync.js';
import type { ApplyResult } from '../../src/engine/controller.js';
import { ApplyError, ConfigError, LockError } from '../../src/errors.js';

/** A clock the test moves by hand; timers fire in order. */
class ManualClock implements Clock {
  time = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.push({ at: this.time + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const due = this.timers[0];
      if (!due || due.at > end) break;
      this.timers.shift();
      this.time = due.at;
      due.fn();
    }
    this.time = end;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const success = (trigger: SyncTrigger): SyncOutcome => ({ ok: true, trigger, kind: 'noop', durationMs: 1, driftRepaired: false, mappings: 0, added: 0, removed: 0, changed: 0, changes: [], generation: 1, warnings: [] });
const timing = { debounceMs: 200, maxDelayMs: 2000, minIntervalMs: 1000, resyncMs: 60_000 };

function harness(outcome: (trigger: SyncTrigger) => SyncOutcome = success) {
  const clock = new ManualClock();
  const runs: { trigger: SyncTrigger; at: number }[] = [];
  const loop = new SyncLoop(async (trigger) => {
    runs.push({ trigger, at: clock.now() });
    return outcome(trigger);
  }, timing, clock);
  return { clock, runs, loop };
}

describe('sync loop', () => {
  it('coalesces a burst of changes into one sync after the debounce', async () => {
    const { clock, runs, loop } = harness();
    for (let i = 0; i < 1000; i++) {
      loop.request('change');
      await clock.advance(1);
    }
    await clock.advance(500);
    expect(runs).toEqual([{ trigger: 'change', at: 1000 + 200 - 1 }]);
    await loop.stop();
  });

  it('syncs at the latest maxDelay after the first change while changes keep coming, and keeps the minimum interval', async () => {
    const { clock, runs, loop } = harness();
    for (let i = 0; i < 100; i++) {
      loop.request('change');
      await clock.advance(50); // never quiet for 200 ms
    }
    await clock.advance(500);
    const times = runs.map((r) => r.at);
    expect(times[0]).toBe(2000);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
    expect(runs.length).toBeLessThanOrEqual(4);
    await loop.stop();
  });

  it('starts immediately, then resyncs resyncMs after the last sync', async () => {
    const { clock, runs, loop } = harness();
    loop.request('start', true);
    await clock.advance(0);
    expect(runs.map((r) => r.trigger)).toEqual(['start']);
    await clock.advance(59_999);
    expect(runs).toHaveLength(1);
    await clock.advance(1);
    expect(runs.map((r) => r.trigger)).toEqual(['start', 'resync']);
    await loop.stop();
  });

  it('retries a failed apply with backoff, but not bad input (that waits for a change or a resync)', async () => {
    const failing = harness((trigger) => ({ ok: false, trigger, reason: 'lock', error: 'held', durationMs: 1, driftRepaired: false }));
    failing.loop.request('start', true);
    await failing.clock.advance(8000);
    expect(failing.runs.map((r) => r.trigger)).toEqual(['start', 'retry', 'retry', 'retry']);
    expect(failing.runs.map((r) => r.at)).toEqual([0, 1000, 3000, 7000]);
    await failing.loop.stop();
    const broken = harness((trigger) => ({ ok: false, trigger, reason: 'config', error: 'bad', durationMs: 1, driftRepaired: false }));
    broken.loop.request('start', true);
    await broken.clock.advance(59_000);
    expect(broken.runs).toHaveLength(1);
    await broken.loop.stop();
  });

  it('stop() waits for the sync in progress and schedules nothing after', async () => {
    const clock = new ManualClock();
    let finish: () => void = () => {};
    const runs: SyncTrigger[] = [];
    const loop = new SyncLoop((trigger) => {
      runs.push(trigger);
      return new Promise<SyncOutcome>((resolve) => (finish = () => resolve(success(trigger))));
    }, timing, clock);
    loop.request('start', true);
    await clock.advance(0);
    let stopped = false;
    const stopping = loop.stop().then(() => (stopped = true));
    await clock.advance(10);
    expect(stopped).toBe(false);
    finish();
    await stopping;
    loop.request('change');
    await clock.advance(120_000);
    expect(runs).toEqual(['start']);
  });
});

describe('health', () => {
  const base = { startedAt: 0, resyncMs: 60_000 };
  it('is starting before the first sync, ok after a success, failing after a failure, overdue when stuck', () => {
    expect(assessHealth({ ...base, now: 10, last: undefined, lastSuccessAt: undefined })).toMatchObject({ healthy: false, status: 'starting' });
    expect(assessHealth({ ...base, now: 1000, last: { outcome: success('start'), at: 900 }, lastSuccessAt: 900 })).toMatchObject({ healthy: true, status: 'ok' });
    const failed: SyncOutcome = { ok: false, trigger: 'change', reason: 'config', error: 'web.yaml: mappings[0].hostPort: ...', durationMs: 1, driftRepaired: false };
    const health = assessHealth({ ...base, now: 2000, last: { outcome: failed, at: 1900 }, lastSuccessAt: 900 });
    expect(health).toMatchObject({ healthy: false, status: 'failing', error: 'web.yaml: mappings[0].hostPort: ...' });
    expect(health.reason).toContain('last good state stays');
    const limit = overdueAfterMs(60_000);
    expect(assessHealth({ ...base, now: 900 + limit + 1, last: { outcome: success('resync'), at: 900 }, lastSuccessAt: 900 })).toMatchObject({ healthy: false, status: 'overdue' });
    expect(assessHealth({ ...base, now: limit + 1, last: undefined, lastSuccessAt: undefined })).toMatchObject({ healthy: false, status: 'overdue' });
  });
});

describe('--listen', () => {
  it('takes [ADDR:]PORT; a bare port is 127.0.0.1', () => {
    expect(parseListen('9100')).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(parseListen('0.0.0.0:9100')).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(parseListen('[::1]:9100')).toEqual({ host: '::1', port: 9100 });
    expect(parseListen('0')).toEqual({ host: '127.0.0.1', port: 0 });
    for (const bad of ['', 'abc', '70000', 'localhost:9100', '1.2.3.4:', ':9100', '::1:9100']) expect(() => parseListen(bad), bad).toThrow(/--listen/);
  });
});

describe('sync kind and failure reasons', () => {
  const result = (changed: boolean): ApplyResult => ({ changed, dryRun: false, plan: { changes: [], unchanged: 0 }, ruleset: { backend: 'fake', text: '' }, warnings: [], repairedDrift: false });
  it('passes the engine kind through; without one, noop when unchanged and full otherwise', () => {
    expect(syncKind(result(false))).toBe('noop');
    expect(syncKind(result(true))).toBe('full');
    expect(syncKind({ ...result(true), kind: 'delta' })).toBe('delta');
  });
  it('classifies errors once', () => {
    expect(failureReason(ConfigError.at('x', 'bad'))).toBe('config');
    expect(failureReason(new LockError('held', 1))).toBe('lock');
    expect(failureReason(new ApplyError('refused', true))).toBe('apply');
    expect(failureReason(new Error('?'))).toBe('internal');
  });
});

describe('metrics', () => {
  it('exposes the documented series with bounded labels', async () => {
    const metrics = createMetrics({ mappingCounters: async () => [{ name: 'web', description: '', connections: 3, packets: 10, bytes: 640 }] });
    metrics.record({ ...success('start'), kind: 'full', mappings: 2, driftRepaired: true });
    metrics.record({ ok: false, trigger: 'change', reason: 'config', error: 'bad', durationMs: 1, driftRepaired: false });
    metrics.configError();
    const text = await metrics.registry.metrics();
    expect(text).toContain('natctl_sync_duration_seconds_count{kind="full"} 1');
    expect(text).toContain('natctl_sync_duration_seconds_count{kind="delta"} 0');
    expect(text).toContain('natctl_syncs_total{trigger="start",result="ok"} 1');
    expect(text).toContain('natctl_sync_failures_total{reason="config"} 1');
    expect(text).toContain('natctl_drift_repairs_total 1');
    expect(text).toContain('natctl_mappings_managed 2');
    expect(text).toContain('natctl_config_errors_total 1');
    expect(text).toContain('natctl_config_valid 0');
    expect(text).toMatch(/natctl_last_successful_sync_timestamp_seconds \d/);
    expect(text).toContain('natctl_mapping_packets_total{mapping="web"} 10');
    expect(text).toContain('natctl_mapping_bytes_total{mapping="web"} 640');
    expect(text).toContain('natctl_mapping_connections_total{mapping="web"} 3');
    expect(await createMetrics().registry.metrics()).not.toContain('natctl_mapping_');
  });
});

describe('log', () => {
  it('writes one JSON object per line with --log-format json', () => {
    const lines: string[] = [];
    createLogger('json', (line) => lines.push(line)).log('info', 'sync', 'applied', { kind: 'full', durationMs: 12 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', event: 'sync', msg: 'applied', kind: 'full', durationMs: 12 });
  });
});
