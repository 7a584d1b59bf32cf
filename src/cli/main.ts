#!/usr/bin/env node
// natctl's command line: parse flags, call the library, print, exit with the codes of
// docs/contract.md §4. With --json every run prints exactly one JSON document on stdout,
// usage errors and help included.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { Config } from '../config/schema.js';
import type { Controller, ControllerOptions } from '../engine/controller.js';
import { ConfigError, EnvironmentError, ExitCode, NatctlError } from '../errors.js';
import { registerWatch } from './watch.js';
import { registerMappings } from './mappings.js';
import { registerHistory } from './history.js';

// Start-up cost: every command pays for what this file imports, so only commander and the
// errors are loaded up front; each action imports what it needs (the engine, zod, execa,
// the renderers) when it runs. `natctl --version` and `natctl history` stay near Node's own
// start-up (docs/performance.md, "CLI start-up and the front end").
const loadConfigFile = async (file: string): Promise<Config> => (await import('../config/load.js')).loadConfigFile(file);
const formats = (): Promise<typeof import('./format.js')> => import('./format.js');

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
  if (options.netns !== undefined) out.netns = options.netns;
  if (options.stateDir !== undefined) out.stateDir = options.stateDir;
  if (options.lockTimeout !== undefined) out.lockTimeoutMs = options.lockTimeout * 1000;
  if (options.backend !== undefined) out.backend = options.backend;
  return out;
}

/** Opens the engine on the backend `--backend` names (auto: chosen, see src/backends/factory.ts). */
async function openController(options: GlobalOptions): Promise<Controller> {
  const { Controller } = await import('../engine/controller.js');
  const controller = await Controller.open(controllerOptions(options));
  // --verbose says which backend and why, and how rulesets reach the kernel (the backend's own
  // line: for nft, the transport, including a fallback that is quiet otherwise).
  if (options.verbose) {
    process.stderr.write(`natctl: backend ${controller.backend.name}: ${controller.backendReason}\n`);
    const line = controller.backend.describe?.();
    if (line) process.stderr.write(`natctl: ${line}\n`);
  }
  return controller;
}

/** The backend and why it was chosen, for --json output. */
const backendOf = (controller: Controller): { name: string; reason: string } => ({ name: controller.backend.name, reason: controller.backendReason });

const print = (text: string): void => void process.stdout.write(text);
const printJson = (value: unknown): void => print(`${JSON.stringify(value, null, 2)}\n`);
/** Prints text given in pieces, ~64 KB at a time: a 50,000-line plan is never one string. */
function printPieces(pieces: Iterable<string>): void {
  let chunk = '';
  for (const piece of pieces) {
    chunk += piece;
    if (chunk.length >= 65536) {
      print(chunk);
      chunk = '';
    }
  }
  if (chunk) print(chunk);
}

function backendOption(): Option {
  return new Option('--backend <name>', 'ruleset backend').choices(['auto', 'nft', 'iptables-legacy']).default('auto');
}

/** Where commander's own text (help, usage errors) goes: the terminal, or a buffer when --json. */
export interface ProgramOutput {
  json: boolean;
  /** Text commander wrote while --json was on; printed inside the one JSON document. */
  captured: { out: string; err: string };
}

export function buildProgram(setExit: (code: number) => void, output: ProgramOutput = { json: false, captured: { out: '', err: '' } }): Command {
  const program = new Command('natctl');
  // Set before any command is added: subcommands copy the parent's output settings.
  if (output.json) {
    program.configureOutput({
      writeOut: (text) => void (output.captured.out += text),
      writeErr: (text) => void (output.captured.err += text),
    });
  }
  program
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
    .option('--verify-full', 'compare the whole live ruleset with the last apply first (repairs a rule edited inside the table)')
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (options: { file: string; dryRun?: boolean; verifyFull?: boolean }, command: Command) => {
      const opts = globals(command);
      const config = await loadConfigFile(options.file);
      const controller = await openController(opts);
      const result = await controller.apply(config, { dryRun: options.dryRun === true, verifyFull: options.verifyFull === true });
      if (opts.json) printJson({ kind: result.kind, changed: result.changed, dryRun: result.dryRun, generation: result.generation?.generation, backend: backendOf(controller), repairedDrift: result.repairedDrift, plan: result.plan, warnings: result.warnings });
      else printPieces((await formats()).formatApplyPieces(result));
    });

  program.command('plan')
    .description('what apply would add, change and remove, mapping by mapping')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON) or drop-in directory')
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (options: { file: string }, command: Command) => {
      const opts = globals(command);
      const config = await loadConfigFile(options.file);
      const controller = await openController(opts);
      const plan = await controller.plan(config);
      if (opts.json) printJson({ ...plan, backend: backendOf(controller) });
      else print((await formats()).formatPlan(plan));
    });

  program.command('render')
    .description('print the ruleset a config compiles to (no kernel access, no root)')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON) or drop-in directory')
    .addOption(new Option('--format <format>', 'output format').choices(['nft-json', 'nft', 'iptables']).default('nft-json'))
    .action(async (options: { file: string; format: string }, command: Command) => {
      const { buildModel } = await import('../model/build.js');
      const model = buildModel(await loadConfigFile(options.file));
      if (options.format === 'iptables') {
        const { renderIptablesRules, renderText: renderIptablesText } = await import('../backends/iptables/render.js');
        return void print(renderIptablesText(renderIptablesRules(model)));
      }
      const [{ renderNftDocument }, { documentToText }] = await Promise.all([import('../backends/nft/render.js'), import('../backends/nft/text.js')]);
      const document = renderNftDocument(model);
      if (options.format !== 'nft') print(`${JSON.stringify(document, null, 2)}\n`);
      else if (globals(command).json) printJson({ format: 'nft', ruleset: documentToText(document) });
      else print(documentToText(document));
    });

  program.command('status')
    .description(`live mappings with counters, and drift against the last apply (exit ${driftExitCode} on drift)`)
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const controller = await openController(opts);
      const report = await controller.status();
      if (opts.json) printJson(report);
      else print((await formats()).formatStatus(report));
      if (report.drift.drifted) setExit(driftExitCode);
    });

  program.command('flush')
    .description("remove everything natctl owns in the kernel, nothing else")
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const controller = await openController(opts);
      await controller.flush();
      if (opts.json) printJson({ flushed: true });
      else print(`natctl's rules removed (${controller.backend.name})\n`);
    });

  registerHistory(program, print, printJson);

  program.command('rollback')
    .description('re-apply an earlier generation (default: the previous one)')
    .option('--to <generation>', 'generation number (see natctl history)', (v: string) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a generation number');
      return Number(v);
    })
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (options: { to?: number }, command: Command) => {
      const opts = globals(command);
      const controller = await openController(opts);
      const result = await controller.rollback(options.to);
      // A rollback with auto goes back to the backend that applied the generation.
      if (opts.json) printJson({ changed: result.changed, generation: result.generation?.generation, backend: result.ruleset.backend, plan: result.plan });
      else print((await formats()).formatApply(result));
    });

  program.command('doctor')
    .description("check the host: the backend's tools and kernel support, forwarding, bridges, hairpin, other firewalls, port clashes")
    .option('-f, --file <file>', 'check against this config file or directory (default: the last applied one)')
    .addOption(backendOption())
    .option('--json', 'machine-readable output')
    .action(async (options: { file?: string }, command: Command) => {
      const opts = globals(command);
      const config = options.file ? await loadConfigFile(options.file) : undefined;
      const controller = await openController(opts);
      // Which backend `natctl apply` would drive here, and why; then that backend's checks.
      const results = [{ check: 'backend', status: 'info' as const, message: `${controller.backend.name}: ${controller.backendReason}` }, ...(await controller.doctor(config))];
      if (opts.json) printJson(results);
      else print((await formats()).formatDoctor(results));
      if (results.some((r) => r.status === 'fail')) setExit(ExitCode.environment);
    });

  program.command('schema')
    .description("print the config's JSON Schema")
    .action(async () => printJson((await import('../config/schema.js')).configJsonSchema()));

  registerWatch(program);
  registerMappings(program, controllerOptions);
  return program;
}

/** Errors from the operating system that mean "not allowed here" (e.g. the state dir as a non-root user). */
function permissionError(error: unknown): EnvironmentError | undefined {
  const errno = error as NodeJS.ErrnoException | undefined;
  if (!(error instanceof Error) || !errno || !['EACCES', 'EPERM', 'EROFS'].includes(errno.code ?? '')) return undefined;
  const where = errno.path ? ` ${errno.path}` : '';
  const hint = errno.code === 'EROFS' ? 'it is on a read-only file system' : 'run as root (sudo natctl ...), or point --state-dir at a directory you own';
  return new EnvironmentError(`permission denied: ${errno.syscall ?? 'access'}${where} (${errno.code}); ${hint}`, { cause: error });
}

function reportError(error: unknown, output: ProgramOutput): number {
  const json = output.json;
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || (error.code === 'commander.help' && error.exitCode === 0)) {
      if (json) printJson(error.code === 'commander.version' ? { version } : { help: output.captured.out || output.captured.err });
      return ExitCode.ok;
    }
    // A usage error, or help shown because no command was given (`natctl` alone): exit 2.
    if (json) {
      const message = error.code === 'commander.help' ? 'no command given' : error.message.replace(/^error: /, '');
      printJson({ error: { type: 'UsageError', message, exitCode: ExitCode.invalidInput, usage: output.captured.err.trim() || undefined } });
    } else if (error.code === 'commander.help') {
      process.stderr.write('natctl: no command given (see the list above)\n');
    }
    return ExitCode.invalidInput;
  }
  const known = error instanceof NatctlError ? error : permissionError(error);
  if (known) {
    if (json) {
      const problems = known instanceof ConfigError ? known.problems : undefined;
      printJson({ error: { type: known.name, message: known.message, exitCode: known.exitCode, ...(problems ? { problems } : {}) } });
    } else {
      const heading = known instanceof ConfigError ? 'invalid config' : known.name.replace(/Error$/, '').replace(/(?<=[a-z])(?=[A-Z])/g, ' ').toLowerCase() + ' error';
      process.stderr.write(`natctl: ${heading}:\n${known.message.split('\n').map((l) => `  ${l}`).join('\n')}\n`);
    }
    return known.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  if (json) printJson({ error: { type: 'InternalError', message, exitCode: ExitCode.applyFailed } });
  else process.stderr.write(`natctl: unexpected error: ${message}\n`);
  return ExitCode.applyFailed;
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = ExitCode.ok;
  const output: ProgramOutput = { json: argv.includes('--json'), captured: { out: '', err: '' } };
  const program = buildProgram((code) => {
    exitCode = code;
  }, output);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    return reportError(error, output);
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
