// When the agent syncs (docs/operations.md, "natctl watch"): changes are debounced (a burst
// of writes coalesces into one sync once the directory has been quiet for `debounceMs`, or at
// the latest `maxDelayMs` after the first change), two syncs start at least `minIntervalMs`
// apart, only one runs at a time, and a resync runs `resyncMs` after the last sync finished.
// A sync that failed for a reason other than bad input is retried with backoff.
import type { SyncOutcome, SyncTrigger } from './sync.js';

export interface LoopTiming {
  debounceMs: number;
  maxDelayMs: number;
  minIntervalMs: number;
  resyncMs: number;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** When several triggers are pending, the sync is reported under the most specific one. */
const precedence: SyncTrigger[] = ['signal', 'change', 'start', 'retry', 'resync'];

export class SyncLoop {
  private pending: SyncTrigger | undefined;
  private firstPendingAt = 0;
  private lastEventAt = 0;
  private lastStartAt = Number.NEGATIVE_INFINITY;
  private timer: unknown;
  private resyncTimer: unknown;
  private retryTimer: unknown;
  private running: Promise<void> | undefined;
  private stopped = false;
  private failures = 0;
  private immediate = false;

  constructor(
    private readonly run: (trigger: SyncTrigger) => Promise<SyncOutcome>,
    private readonly timing: LoopTiming,
    private readonly clock: Clock = realClock,
  ) {}

  /** Asks for a sync. `immediate` skips the debounce (start, SIGHUP); the minimum interval still holds. */
  request(trigger: SyncTrigger, immediate = false): void {
    if (this.stopped) return;
    const now = this.clock.now();
    if (this.pending === undefined) this.firstPendingAt = now;
    if (this.pending === undefined || precedence.indexOf(trigger) < precedence.indexOf(this.pending)) this.pending = trigger;
    this.lastEventAt = now;
    if (immediate) this.immediate = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.running || this.pending === undefined) return;
    const now = this.clock.now();
    const quietAt = this.immediate ? now : Math.min(this.lastEventAt + this.timing.debounceMs, this.firstPendingAt + this.timing.maxDelayMs);
    const at = Math.max(quietAt, this.lastStartAt + this.timing.minIntervalMs);
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.fire();
    }, Math.max(0, at - now));
  }

  private fire(): void {
    if (this.stopped || this.running || this.pending === undefined) return;
    const trigger = this.pending;
    this.pending = undefined;
    this.immediate = false;
    this.lastStartAt = this.clock.now();
    if (this.resyncTimer !== undefined) this.clock.clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.running = this.run(trigger)
      .then((outcome) => this.after(outcome), () => this.after(undefined))
      .finally(() => {
        this.running = undefined;
        this.schedule();
      });
  }

  private after(outcome: SyncOutcome | undefined): void {
    if (this.stopped) return;
    this.resyncTimer = this.clock.setTimeout(() => this.request('resync', true), this.timing.resyncMs);
    const retryable = outcome === undefined || (!outcome.ok && outcome.reason !== 'config');
    if (!retryable) {
      this.failures = 0;
      if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      return;
    }
    // Lock held, kernel refused, tool missing: try again, 1 s, 2 s, 4 s ... up to the resync interval.
    this.failures++;
    const backoff = Math.min(1000 * 2 ** (this.failures - 1), this.timing.resyncMs);
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.request('retry', true);
    }, backoff);
  }

  /** Stops scheduling; resolves when a sync in progress has finished (it is never interrupted). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const handle of [this.timer, this.resyncTimer, this.retryTimer]) if (handle !== undefined) this.clock.clearTimeout(handle);
    this.timer = undefined;
    this.resyncTimer = undefined;
    this.retryTimer = undefined;
    await this.running;
  }
}
