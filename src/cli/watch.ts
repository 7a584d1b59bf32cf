// `natctl watch`: the node agent's command line (docs/operations.md, "natctl watch").
import { type Command, InvalidArgumentError, Option } from 'commander';
import { defaultTiming } from '../agent/timing.js';
import type { LogFormat } from '../agent/log.js';
import type { ControllerOptions } from '../engine/controller.js';
import { EnvironmentError } from '../errors.js';

interface WatchOptions {
  file: string;
  resync: number;
  listen?: string;
  logFormat: LogFormat;
  mappingMetrics?: boolean;
  debounce: number;
  minInterval: number;
  backend: 'auto' | 'nft' | 'iptables-legacy';
}

interface Globals {
  netns?: string;
  stateDir?: string;
  json?: boolean;
  lockTimeout?: number;
}

function positiveSeconds(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new InvalidArgumentError('must be a number of seconds > 0');
  return parsed;
}

function nonNegativeSeconds(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new InvalidArgumentError('must be a number of seconds >= 0');
  return parsed;
}

export function registerWatch(program: Command): void {
  program.command('watch')
    .description('node agent: apply PATH at start and whenever it changes, repair drift every resync, serve /healthz and /metrics')
    .requiredOption('-f, --file <path>', 'config file or drop-in directory of fragments (*.yaml, *.yml, *.json)')
    .option('--resync <seconds>', 'check for drift and repair it this often', positiveSeconds, defaultTiming.resyncMs / 1000)
    .option('--listen <[addr:]port>', 'serve /healthz and /metrics here (address default 127.0.0.1; off by default)')
    .addOption(new Option('--log-format <format>', 'log lines on stderr').choices(['text', 'json']).default('text'))
    .option('--mapping-metrics', `per-mapping connection/packet/byte counters on /metrics (one series per mapping, at most 1000)`)
    .option('--debounce <seconds>', 'apply once the path has been quiet this long', nonNegativeSeconds, defaultTiming.debounceMs / 1000)
    .option('--min-interval <seconds>', 'at least this long between two applies', nonNegativeSeconds, defaultTiming.minIntervalMs / 1000)
    .addOption(new Option('--backend <name>', 'ruleset backend').choices(['auto', 'nft', 'iptables-legacy']).default('auto'))
    .action(async (options: WatchOptions, command: Command) => {
      // The agent, its HTTP server and the engine load only when watch runs (start-up: src/cli/main.ts).
      const [{ Agent }, { parseListen }, { createLogger }, { Controller }, { isRoot }] = await Promise.all([
        import('../agent/agent.js'), import('../agent/http.js'), import('../agent/log.js'), import('../engine/controller.js'), import('../backends/exec.js'),
      ]);
      const globals = command.optsWithGlobals<Globals>();
      const listen = options.listen === undefined ? undefined : parseListen(options.listen);
      if (!isRoot()) throw new EnvironmentError('natctl watch changes the kernel\'s ruleset and needs root (CAP_NET_ADMIN)');
      const controllerOptions: ControllerOptions = { backend: options.backend };
      if (globals.netns !== undefined) controllerOptions.netns = globals.netns;
      if (globals.stateDir !== undefined) controllerOptions.stateDir = globals.stateDir;
      if (globals.lockTimeout !== undefined) controllerOptions.lockTimeoutMs = globals.lockTimeout * 1000;
      const controller = await Controller.open(controllerOptions);
      const debounceMs = options.debounce * 1000;
      const agent = new Agent({
        controller,
        path: options.file,
        logger: createLogger(globals.json ? 'json' : options.logFormat),
        timing: { debounceMs, maxDelayMs: Math.max(debounceMs, defaultTiming.maxDelayMs), minIntervalMs: options.minInterval * 1000, resyncMs: options.resync * 1000 },
        mappingMetrics: options.mappingMetrics === true,
        ...(listen ? { listen } : {}),
      });
      await agent.run();
    });
}
