// `natctl history`: the recorded generations, read from the state dir alone. It needs no
// backend and no kernel, so it loads neither the engine nor a backend (and their libraries):
// it starts as fast as `natctl --version` (docs/performance.md, "CLI start-up and the front
// end").
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { EnvironmentError, UsageError } from '../errors.js';

interface Globals {
  netns?: string;
  stateDir?: string;
  json?: boolean;
}

/** The namespace names createRunner accepts (src/backends/exec.ts), without loading execa for them. */
const netnsNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * The state dir the engine would use for these options (Controller.open, src/engine/controller.ts):
 * --state-dir, else NATCTL_STATE_DIR (empty means unset), else the default; a netns gets its own
 * subdirectory. A namespace that does not exist is refused as the engine refuses it.
 */
export function historyStateDir(globals: Globals, defaultStateDir: string): { dir: string; root: string } {
  if (globals.stateDir === '') throw new UsageError('--state-dir is empty; give a directory (default: /var/lib/natctl)');
  const netns = globals.netns;
  if (netns !== undefined) {
    if (!netnsNamePattern.test(netns)) throw new EnvironmentError(`--netns ${JSON.stringify(netns)} is not a network namespace name`);
    if (!existsSync(`/run/netns/${netns}`)) throw new EnvironmentError(`network namespace ${JSON.stringify(netns)} does not exist (no /run/netns/${netns}); create it with: ip netns add ${netns}`);
  }
  const root = resolve(globals.stateDir ?? (process.env.NATCTL_STATE_DIR || defaultStateDir));
  return { dir: netns !== undefined ? join(root, 'netns', netns) : root, root };
}

export function registerHistory(program: Command, print: (text: string) => void, printJson: (value: unknown) => void): void {
  program.command('history')
    .description('list recorded generations')
    .option('--json', 'machine-readable output')
    .action(async (_options: unknown, command: Command) => {
      const opts = command.optsWithGlobals<Globals>();
      const { StateStore, defaultStateDir } = await import('../engine/state.js');
      const { dir, root } = historyStateDir(opts, defaultStateDir);
      const { generations, corrupt } = await new StateStore(dir, root).scan();
      for (const c of corrupt) process.stderr.write(`natctl: warning: generation ${c.generation} is unreadable and was skipped (${c.file}: ${c.reason})\n`);
      if (opts.json) printJson(generations.map(({ config: _c, ruleset: _r, live: _l, ...rest }) => ({ ...rest, mappings: _c.mappings?.length ?? 0 })));
      else print((await import('./format.js')).formatHistory(generations));
    });
}
