#!/usr/bin/env node
// natctl's command line: parse flags, call the library, print, exit with DESIGN §4's codes.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { documentToText } from '../backends/nft/text.js';
import { loadConfigFile } from '../config/load.js';
import { configJsonSchema } from '../config/schema.js';
import { Controller, type ControllerOptions } from '../engine/controller.js';
import { ConfigError, ExitCode, NatctlError, UsageError } from '../errors.js';
import { buildModel } from '../model/build.js';
import { formatApply, formatDoctor, formatHistory, formatPlan, formatStatus } from './format.js';
import type { NftDocument } from '../backends/nft/json.js';
import { renderNftDocument } from '../backends/nft/render.js';
import { registerWatch } from './watch.js';
import { describeNftTransport } from '../backends/nft/transport.js';

/** `natctl status` exits with this when the live ruleset drifted from the last apply. */
export const driftExitCode = 6;

interface GlobalOptions {
  netns?: string;
  stateDir?: string;
  json?: boolean;
  lockTimeout?: number;
  backend?: 'auto' | 'nft' | 'iptables-legacy';
  verbose?: boolean;
}

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function seconds(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new InvalidArgumentError('must be a number of seconds >= 0');
  return parsed;
}

function controllerOptions(options: GlobalOptions): ControllerOptions {
  const out: ControllerOptions = {};
  // Progress goes to stderr, only for a person at a terminal; --json output stays clean.
  if (process.stderr.isTTY && !options.json) out.onProgress = (phase) => void process.stderr.write(`natctl: ${phase}...\n`);
  // --verbose says how batches reach the kernel, including a fallback that is quiet otherwise.
  if (options.verbose && options.backend !== 'iptables-legacy') process.stderr.write(`natctl: ${describeNftTransport(options.netns !== undefined ? { netns: options.netns } : {})}\n`);
  if (options.netns !== undefined) out.netns = options.netns;
  if (options.stateDir !== undefined) out.stateDir = options.stateDir;
  if (options.lockTimeout !== undefined) out.lockTimeoutMs = options.lockTimeout * 1000;
  if (options.backend !== undefined) out.backend = options.backend;
  return out;
}

const print = (text: string): void => void process.stdout.write(text);
const printJson = (value: unknown): void => print(`${JSON.stringify(value, null, 2)}\n`);

function backendOption(): Option {
  return new Option('--backend <name>', 'ruleset backend').choices(['auto', 'nft', 'iptables-legacy']).default('auto');
}

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('natctl')
    .description('Docker-style port forwarding and NAT for Linux hosts, applied atomically with nftables')
    .version(version, '-V, --version')
    .option('--netns <name>', 'act inside the network namespace /run/netns/NAME')
    .option('--state-dir <dir>', 'where generations are kept (env NATCTL_STATE_DIR; default /var/lib/natctl)')
    .option('--json', 'machine-readable output')
    .option('--lock-timeout <seconds>', 'how long to wait for another apply (default 30)', seconds)
    .option('--verbose', 'say how natctl reaches the kernel (in-process libnftables or the nft binary) on stderr')
    .showHelpAfterError()
    .exitOverride();

  const globals = (command: Command): GlobalOptions => command.optsWithGlobals<GlobalOptions>();

  program.command('apply')
    .description('apply a config: diff, load atomically, verify, roll back on failure')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON) or drop-in directory')
    .option('--dry-run', 'show what would change; touch nothing')
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (options: { file: string; dryRun?: boolean }, command: Command) => {
      const opts = globals(command);
      const config = await loadConfigFile(options.file);
      const controller = await Controller.open(controllerOptions(opts));
      const result = await controller.apply(config, { dryRun: options.dryRun === true });
      if (opts.json) printJson({ changed: result.changed, dryRun: result.dryRun, generation: result.generation?.generation, repairedDrift: result.repairedDrift, plan: result.plan, warnings: result.warnings });
      else print(formatApply(result));
    });

  program.command('plan')
    .description('what apply would add, change and remove, mapping by mapping')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON) or drop-in directory')
    .option('--json', 'machine-readable output')
    .action(async (options: { file: string }, command: Command) => {
      const opts = globals(command);
      const config = await loadConfigFile(options.file);
      const controller = await Controller.open({ ...controllerOptions(opts), backend: 'nft' });
      const plan = await controller.plan(config);
      if (opts.json) printJson(plan);
      else print(formatPlan(plan));
    });

  program.command('render')
    .description('print the ruleset a config compiles to (no kernel access, no root)')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON) or drop-in directory')
    .addOption(new Option('--format <format>', 'output format').choices(['nft-json', 'nft', 'iptables']).default('nft-json'))
    .action(async (options: { file: string; format: string }) => {
      const model = buildModel(await loadConfigFile(options.file));
      if (options.format === 'iptables') throw new UsageError('--format iptables needs the iptables-legacy backend, which this version does not include');
      const document: NftDocument = renderNftDocument(model);
      print(options.format === 'nft' ? documentToText(document) : `${JSON.stringify(document, null, 2)}\n`);
    });

  program.command('status')
    .description(`live mappings with counters, and drift against the last apply (exit ${driftExitCode} on drift)`)
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const controller = await Controller.open(controllerOptions(opts));
      const report = await controller.status();
      if (opts.json) printJson(report);
      else print(formatStatus(report));
      if (report.drift.drifted) setExit(driftExitCode);
    });

  program.command('flush')
    .description("remove everything natctl owns in the kernel, nothing else")
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const controller = await Controller.open(controllerOptions(opts));
      await controller.flush();
      if (opts.json) printJson({ flushed: true });
      else print("natctl's table removed\n");
    });

  program.command('history')
    .description('list recorded generations')
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const controller = await Controller.open(controllerOptions(opts));
      const generations = await controller.history();
      if (opts.json) printJson(generations.map(({ config: _c, ruleset: _r, live: _l, ...rest }) => ({ ...rest, mappings: _c.mappings?.length ?? 0 })));
      else print(formatHistory(generations));
    });

  program.command('rollback')
    .description('re-apply an earlier generation (default: the previous one)')
    .option('--to <generation>', 'generation number (see natctl history)', (v: string) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a generation number');
      return Number(v);
    })
    .option('--json', 'machine-readable output')
    .action(async (options: { to?: number }, command: Command) => {
      const opts = globals(command);
      const controller = await Controller.open(controllerOptions(opts));
      const result = await controller.rollback(options.to);
      if (opts.json) printJson({ changed: result.changed, generation: result.generation?.generation, plan: result.plan });
      else print(formatApply(result));
    });

  program.command('doctor')
    .description('check the host: nft, kernel support, forwarding, bridges, hairpin, other firewalls, port clashes')
    .option('-f, --file <file>', 'check against this config file or directory (default: the last applied one)')
    .option('--json', 'machine-readable output')
    .action(async (options: { file?: string }, command: Command) => {
      const opts = globals(command);
      const config = options.file ? await loadConfigFile(options.file) : undefined;
      const controller = await Controller.open({ ...controllerOptions(opts), backend: 'nft' });
      const results = await controller.doctor(config);
      if (opts.json) printJson(results);
      else print(formatDoctor(results));
      if (results.some((r) => r.status === 'fail')) setExit(ExitCode.environment);
    });

  program.command('schema')
    .description("print the config's JSON Schema")
    .action(() => printJson(configJsonSchema()));

  registerWatch(program);
  return program;
}

function reportError(error: unknown, json: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
    return ExitCode.invalidInput;
  }
  if (error instanceof NatctlError) {
    if (json) {
      const problems = error instanceof ConfigError ? error.problems : undefined;
      printJson({ error: { type: error.name, message: error.message, exitCode: error.exitCode, ...(problems ? { problems } : {}) } });
    } else {
      const heading = error instanceof ConfigError ? 'invalid config' : error.name.replace(/Error$/, '').toLowerCase() + ' error';
      process.stderr.write(`natctl: ${heading}:\n${error.message.split('\n').map((l) => `  ${l}`).join('\n')}\n`);
    }
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  if (json) printJson({ error: { type: 'InternalError', message, exitCode: ExitCode.applyFailed } });
  else process.stderr.write(`natctl: unexpected error: ${message}\n`);
  return ExitCode.applyFailed;
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = ExitCode.ok;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    return reportError(error, argv.includes('--json'));
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
