// The agent's Prometheus metrics (docs/operations.md, "Metrics"), through prom-client, in a
// registry of its own. Every label takes values from a fixed list, except `mapping`, which
// exists only with --mapping-metrics and is capped at mappingMetricsLimit series per metric.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MappingCounters } from '../backends/backend.js';
import { failureReasons, type SyncOutcome, syncKinds, syncTriggers } from './sync.js';

/** At most this many mappings get their own series (sorted by name; the rest are counted in natctl_mapping_metrics_omitted). */
export const mappingMetricsLimit = 1000;

export interface AgentMetrics {
  registry: Registry;
  record(outcome: SyncOutcome): void;
  configError(): void;
}

export interface MetricsOptions {
  /** Per-mapping counters read from the kernel at scrape time; undefined: off. */
  mappingCounters?: () => Promise<MappingCounters[]>;
}

export function createMetrics(options: MetricsOptions = {}): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'natctl_' });
  const duration = new Histogram({
    name: 'natctl_sync_duration_seconds',
    help: 'Duration of successful syncs (reading the desired state, waiting for the lock, applying), by kind: full, delta or noop',
    labelNames: ['kind'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const syncs = new Counter({ name: 'natctl_syncs_total', help: 'Syncs by trigger (start, change, resync, signal, retry) and result (ok, failed)', labelNames: ['trigger', 'result'], registers: [registry] });
  const failures = new Counter({ name: 'natctl_sync_failures_total', help: 'Failed syncs by reason: config, lock, apply, rollback, environment, internal', labelNames: ['reason'], registers: [registry] });
  const drift = new Counter({ name: 'natctl_drift_repairs_total', help: 'Syncs that found the kernel differing from the last apply and rewrote it', registers: [registry] });
  const lastSuccess = new Gauge({ name: 'natctl_last_successful_sync_timestamp_seconds', help: 'Unix time of the last successful sync', registers: [registry] });
  const lastOk = new Gauge({ name: 'natctl_last_sync_success', help: '1 when the last sync succeeded, 0 when it failed', registers: [registry] });
  const mappings = new Gauge({ name: 'natctl_mappings_managed', help: 'Mappings in the last applied desired state', registers: [registry] });
  const configErrors = new Counter({ name: 'natctl_config_errors_total', help: 'Syncs that found the desired state (file or drop-in directory) invalid; nothing was applied from it', registers: [registry] });
  const configValid = new Gauge({ name: 'natctl_config_valid', help: '1 when the desired state last read was valid, 0 when it was not', registers: [registry] });
  // Series exist from the start (zero), so alerts and rate() see them before the first event.
  for (const kind of syncKinds) duration.zero({ kind });
  for (const trigger of syncTriggers) for (const result of ['ok', 'failed']) syncs.inc({ trigger, result }, 0);
  for (const reason of failureReasons) failures.inc({ reason }, 0);
  drift.inc(0);
  configErrors.inc(0);

  if (options.mappingCounters) {
    const read = options.mappingCounters;
    let cache: { at: number; value: Promise<MappingCounters[]> } | undefined;
    // One kernel read per scrape at most every 5 s, shared by the three metrics.
    const counters = (): Promise<MappingCounters[]> => {
      if (!cache || Date.now() - cache.at > 5000) cache = { at: Date.now(), value: read().catch(() => []) };
      return cache.value;
    };
    const limited = async (): Promise<MappingCounters[]> => [...(await counters())].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).slice(0, mappingMetricsLimit);
    const perMapping = (name: string, help: string, field: 'connections' | 'packets' | 'bytes'): void => {
      new Counter({
        name,
        help,
        labelNames: ['mapping'],
        registers: [registry],
        // The kernel keeps these counters; a full apply starts them at zero again (a counter reset to Prometheus).
        async collect() {
          this.reset();
          for (const c of await limited()) this.inc({ mapping: c.name }, c[field]);
        },
      });
    };
    perMapping('natctl_mapping_connections_total', 'New connections DNATed by the mapping (kernel counter)', 'connections');
    perMapping('natctl_mapping_packets_total', 'Forwarded packets of the mapping, both directions (kernel counter)', 'packets');
    perMapping('natctl_mapping_bytes_total', 'Forwarded bytes of the mapping, both directions (kernel counter)', 'bytes');
    new Gauge({
      name: 'natctl_mapping_metrics_omitted',
      help: `Mappings without their own series (beyond the first ${mappingMetricsLimit} by name)`,
      registers: [registry],
      async collect() {
        this.set(Math.max(0, (await counters()).length - mappingMetricsLimit));
      },
    });
  }

  return {
    registry,
    record(outcome) {
      syncs.inc({ trigger: outcome.trigger, result: outcome.ok ? 'ok' : 'failed' });
      if (outcome.driftRepaired) drift.inc();
      lastOk.set(outcome.ok ? 1 : 0);
      if (outcome.ok) {
        duration.observe({ kind: outcome.kind }, outcome.durationMs / 1000);
        lastSuccess.set(Date.now() / 1000);
        mappings.set(outcome.mappings);
        configValid.set(1);
      } else {
        failures.inc({ reason: outcome.reason });
        if (outcome.reason === 'config') configValid.set(0);
      }
    },
    configError() {
      configErrors.inc();
    },
  };
}
