// The node agent, `natctl watch` (docs/operations.md): applies PATH at start, again when it
// changes (inotify through fs.watch), repairs drift every resync, serves /healthz and /metrics,
// and stops on SIGTERM/SIGINT without touching the kernel (the rules stay). SIGHUP re-reads.
// The engine's lock is taken per sync only, so an operator's `natctl apply` and the agent
// serialize and the agent never holds it while idle.
import { type FSWatcher, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Controller } from '../engine/controller.js';
import { EnvironmentError } from '../errors.js';
import { assessHealth, type Health } from './health.js';
import { type ListenAddress, startHttp } from './http.js';
import type { Logger } from './log.js';
import { SyncLoop, type LoopTiming } from './loop.js';
import { type AgentMetrics, createMetrics } from './metrics.js';
import { Reconciler, type SyncOutcome, type SyncTrigger } from './sync.js';

export interface AgentOptions {
  controller: Controller;
  path: string;
  timing: LoopTiming;
  logger: Logger;
  listen?: ListenAddress;
  mappingMetrics?: boolean;
  /** Signals the agent handles; tests pass none and call stop(). */
  signals?: boolean;
}

export { defaultTiming } from './timing.js';

export class Agent {
  private readonly startedAt = Date.now();
  private last: { outcome: SyncOutcome; at: number } | undefined;
  private lastSuccessAt: number | undefined;
  private watcher: FSWatcher | undefined;
  private watchedIno: number | undefined;
  private http: { port: number; close(): Promise<void> } | undefined;
  private readonly loop: SyncLoop;
  private readonly reconciler: Reconciler;
  private readonly metrics: AgentMetrics;
  private readonly stopped: Promise<void>;
  private resolveStopped: () => void = () => {};
  private stopping = false;
  private lastConfigError: string | undefined;
  private readonly signalHandlers: [NodeJS.Signals, () => void][] = [];

  constructor(private readonly options: AgentOptions) {
    const { controller, logger } = options;
    this.metrics = createMetrics(options.mappingMetrics ? { mappingCounters: async () => (await controller.status()).mappings } : {});
    this.reconciler = new Reconciler({
      controller,
      path: options.path,
      onConfigError: (message) => {
        this.metrics.configError();
        // Said once per distinct problem; every failed sync still logs its own line.
        if (message === this.lastConfigError) return;
        this.lastConfigError = message;
        logger.log('error', 'config', 'the desired state is invalid; nothing from it was applied, the last good state stays in the kernel', { path: options.path, error: message });
      },
      onRepairWithLastGood: (result) => logger.log('warn', 'repair', 'the kernel drifted while the desired state is invalid: re-applied the last good config', { driftRepaired: result.repairedDrift, generation: result.generation?.generation }),
    });
    this.loop = new SyncLoop((trigger) => this.sync(trigger), options.timing);
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  health(): Health {
    return assessHealth({ now: Date.now(), startedAt: this.startedAt, resyncMs: this.options.timing.resyncMs, last: this.last, lastSuccessAt: this.lastSuccessAt });
  }

  get port(): number | undefined {
    return this.http?.port;
  }

  private async sync(trigger: SyncTrigger): Promise<SyncOutcome> {
    if (trigger === 'resync') await this.ensureWatching();
    const outcome = await this.reconciler.sync(trigger);
    this.last = { outcome, at: Date.now() };
    if (outcome.ok) {
      this.lastSuccessAt = this.last.at;
      this.lastConfigError = undefined;
    }
    this.metrics.record(outcome);
    const { logger } = this.options;
    if (outcome.ok) {
      const { ok: _ok, ...fields } = outcome;
      const what = outcome.kind === 'noop' ? 'in sync, nothing to change' : `applied (+${outcome.added} -${outcome.removed} ~${outcome.changed})`;
      logger.log(outcome.warnings.length ? 'warn' : 'info', 'sync', `${what}${outcome.driftRepaired ? ', drift repaired' : ''}`, fields);
    } else {
      const { ok: _ok, ...fields } = outcome;
      logger.log('error', 'sync', `sync failed (${outcome.reason})`, fields);
    }
    return outcome;
  }

  /** Watches PATH (a directory: every entry; a file: its name in its directory, so rename-into-place is seen). */
  private async ensureWatching(): Promise<void> {
    const info = await stat(this.options.path).catch(() => undefined);
    const isDir = info?.isDirectory() === true;
    const target = isDir ? this.options.path : dirname(this.options.path);
    const targetInfo = isDir ? info : await stat(target).catch(() => undefined);
    if (this.watcher && targetInfo?.ino === this.watchedIno) return;
    this.watcher?.close();
    this.watcher = undefined;
    if (!targetInfo) return; // nothing to watch yet: the resync looks again
    const name = basename(this.options.path);
    try {
      // Every event in a directory counts, hidden names too: a Kubernetes ConfigMap update only renames `..data`.
      this.watcher = watch(target, { persistent: true }, (_event, file) => {
        if (isDir || file === null || file === name) this.loop.request('change');
      });
      this.watchedIno = targetInfo.ino;
      this.watcher.on('error', (error) => {
        this.options.logger.log('warn', 'watch', 'watching the desired state failed; the next resync watches again', { path: target, error: error.message });
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (error) {
      this.options.logger.log('warn', 'watch', 'cannot watch the desired state; relying on resync', { path: target, error: (error as Error).message });
    }
  }

  /** Starts watching, serving and the first sync; resolves when the agent has stopped. */
  async run(): Promise<void> {
    const { logger, listen } = this.options;
    if (listen) {
      try {
        this.http = await startHttp(listen, { health: () => this.health(), registry: this.metrics.registry });
      } catch (error) {
        throw new EnvironmentError(`cannot listen on ${listen.host}:${listen.port}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
      }
    }
    await this.ensureWatching();
    if (this.options.signals !== false) {
      const on = (signal: NodeJS.Signals, handler: () => void): void => {
        process.on(signal, handler);
        this.signalHandlers.push([signal, handler]);
      };
      on('SIGTERM', () => void this.stop('SIGTERM'));
      on('SIGINT', () => void this.stop('SIGINT'));
      on('SIGHUP', () => {
        logger.log('info', 'signal', 'SIGHUP: re-reading the desired state');
        this.loop.request('signal', true);
      });
    }
    logger.log('info', 'start', 'natctl watch started', {
      path: this.options.path,
      pid: process.pid,
      resyncSeconds: this.options.timing.resyncMs / 1000,
      ...(this.http && listen ? { listen: `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${this.http.port}` } : {}),
    });
    this.loop.request('start', true);
    await this.stopped;
  }

  /** Stops cleanly: the sync in progress finishes (it holds the lock), nothing in the kernel is touched. */
  async stop(reason = 'stop'): Promise<void> {
    if (this.stopping) {
      // A second signal while a sync finishes: leave now. The apply batch is atomic and a dead holder's lock is taken over.
      this.options.logger.log('warn', 'stop', `${reason} again: exiting without waiting for the sync in progress`);
      process.exit(reason === 'SIGINT' ? 130 : 143);
    }
    this.stopping = true;
    this.options.logger.log('info', 'stop', `${reason}: stopping; natctl's rules stay in the kernel`);
    await this.loop.stop();
    this.watcher?.close();
    await this.http?.close();
    for (const [signal, handler] of this.signalHandlers) process.off(signal, handler);
    this.options.logger.log('info', 'stop', 'stopped');
    this.resolveStopped();
  }
}
