// `natctl add` and `natctl rm`: one mapping (or a few) by name on top of the last applied
// config, through the library's agent API (docs/contract.md §4, docs/embedding.md): the same
// validation, conflict checks, lock, verification, rollback and generations as `apply`.
import { type Command, Option } from 'commander';
import type { MappingConfig } from '../config/schema.js';
import type { ApplyResult, ControllerOptions } from '../engine/controller.js';

interface Globals {
  json?: boolean;
}

interface AddOptions {
  name?: string;
  publish?: string;
  hostPort?: string;
  hostIp?: string;
  proto?: 'tcp' | 'udp' | 'sctp';
  target?: string;
  targets?: string[];
  network?: string;
  allow?: string[];
  replace?: boolean;
}

/** The mapping the flags describe, field by field as in a config file; the library validates it. */
export function mappingFromFlags(options: AddOptions): MappingConfig {
  const mapping: Record<string, unknown> = {};
  if (options.name !== undefined) mapping.name = options.name;
  if (options.publish !== undefined) mapping.publish = options.publish;
  if (options.hostPort !== undefined) mapping.hostPort = /^\d+$/.test(options.hostPort) ? Number(options.hostPort) : options.hostPort;
  if (options.hostIp !== undefined) mapping.hostIp = options.hostIp;
  if (options.proto !== undefined) mapping.proto = options.proto;
  if (options.target !== undefined) mapping.target = options.target;
  if (options.targets !== undefined) mapping.targets = options.targets;
  if (options.network !== undefined) mapping.network = options.network;
  if (options.allow !== undefined) mapping.allow = options.allow;
  return mapping as MappingConfig;
}

/** What `--json` prints for a change: the same document as `natctl apply --json`. */
export function applyJson(result: ApplyResult): Record<string, unknown> {
  return { kind: result.kind, changed: result.changed, dryRun: result.dryRun, generation: result.generation?.generation, repairedDrift: result.repairedDrift, plan: result.plan, warnings: result.warnings };
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerMappings(program: Command, controllerOptions: (options: Globals & Record<string, unknown>) => ControllerOptions): void {
  const backend = (): Option => new Option('--backend <name>', 'ruleset backend').choices(['auto', 'nft', 'iptables-legacy']).default('auto');
  const print = (text: string): void => void process.stdout.write(text);
  // The engine and the formatter are imported when a command runs (start-up: src/cli/main.ts).
  const open = async (opts: Globals & Record<string, unknown>) => (await import('../engine/controller.js')).Controller.open(controllerOptions(opts));
  const report = async (result: ApplyResult, json: boolean | undefined): Promise<void> => {
    if (json) print(`${JSON.stringify(applyJson(result), null, 2)}\n`);
    else print((await import('./format.js')).formatApply(result));
  };

  program.command('add')
    .description('add one mapping to the applied config (a Docker -p string or the fields of a mapping); verified, rolled back on failure')
    .option('--name <name>', 'mapping name (default: derived from proto, host IP and port)')
    .option('-p, --publish <spec>', 'Docker -p syntax: [hostIp:]hostPort[-end]:containerPort[-end][/proto]')
    .option('--host-port <port>', 'host port or range start-end (instead of --publish)')
    .option('--host-ip <ip>', 'only this local address')
    .addOption(new Option('--proto <proto>', 'protocol (with --host-port)').choices(['tcp', 'udp', 'sctp']))
    .option('--target <target>', 'ip, ip:port, [v6]:port or ip:start-end')
    .option('--targets <target>', 'one of several targets (repeat)', collect)
    .option('--network <name>', 'the declared network the target sits in')
    .option('--allow <cidr>', 'only this source may connect (repeat)', collect)
    .option('--replace', 'replace the applied mapping of the same name instead of refusing it')
    .addOption(backend())
    .option('--json', 'machine-readable output')
    .action(async (options: AddOptions, command: Command) => {
      const opts = command.optsWithGlobals<Globals & Record<string, unknown>>();
      const controller = await open(opts);
      const mapping = mappingFromFlags(options);
      const result = options.replace ? await controller.replaceMappings([mapping]) : await controller.addMappings([mapping]);
      await report(result, opts.json);
    });

  program.command('rm')
    .description('remove mappings by name from the applied config; verified, rolled back on failure')
    .argument('<name...>', 'mapping names (see natctl status)')
    .addOption(backend())
    .option('--json', 'machine-readable output')
    .action(async (names: string[], _options: unknown, command: Command) => {
      const opts = command.optsWithGlobals<Globals & Record<string, unknown>>();
      const controller = await open(opts);
      await report(await controller.removeMappings(names), opts.json);
    });
}
