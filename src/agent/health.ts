// /healthz's verdict (docs/operations.md, "Health"): healthy while the last sync succeeded and
// the next one is not overdue. Pure, so it is tested without a clock or a kernel.
import type { SyncOutcome } from './sync.js';

export interface HealthInput {
  now: number;
  /** When the agent started (ms). */
  startedAt: number;
  resyncMs: number;
  last: { outcome: SyncOutcome; at: number } | undefined;
  lastSuccessAt: number | undefined;
}

export interface Health {
  healthy: boolean;
  status: 'ok' | 'starting' | 'failing' | 'overdue';
  reason: string;
  lastSync?: string;
  lastSuccess?: string;
  error?: string;
}

/** No successful sync for this long means the agent is stuck: twice the resync interval, plus 30 s for a slow apply or a held lock. */
export function overdueAfterMs(resyncMs: number): number {
  return 2 * resyncMs + 30_000;
}

export function assessHealth(input: HealthInput): Health {
  const times: Pick<Health, 'lastSync' | 'lastSuccess'> = {};
  if (input.last) times.lastSync = new Date(input.last.at).toISOString();
  if (input.lastSuccessAt !== undefined) times.lastSuccess = new Date(input.lastSuccessAt).toISOString();
  const limit = overdueAfterMs(input.resyncMs);
  if (!input.last) {
    if (input.now - input.startedAt > limit) return { healthy: false, status: 'overdue', reason: `no sync finished in ${Math.round(limit / 1000)} s since start`, ...times };
    return { healthy: false, status: 'starting', reason: 'the first sync has not finished yet', ...times };
  }
  const { outcome } = input.last;
  if (!outcome.ok) {
    const error = outcome.error.length > 2000 ? `${outcome.error.slice(0, 1997)}...` : outcome.error;
    const reason = outcome.reason === 'config' ? 'the desired state is invalid; the last good state stays in the kernel' : `the last sync failed (${outcome.reason})`;
    return { healthy: false, status: 'failing', reason, error, ...times };
  }
  const since = input.now - (input.lastSuccessAt ?? input.last.at);
  if (since > limit) return { healthy: false, status: 'overdue', reason: `no successful sync for ${Math.round(since / 1000)} s (limit ${Math.round(limit / 1000)} s)`, ...times };
  return { healthy: true, status: 'ok', reason: 'the last sync succeeded', ...times };
}
