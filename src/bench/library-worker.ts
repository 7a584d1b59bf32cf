// The library side of the bench, one process per transport (NATCTL_NATIVE is read by natctl
// in this process, so each transport gets a fresh one). It reads one JSON command a line on
// stdin and answers one JSON line on stdout; only `apply`, `add` and `remove` are timed, in
// process, around Controller.apply with an already-parsed config and the agent API
// (addMappings / removeMappings by name): what an embedding agent pays per call.
//   {"cmd":"load","name":"a","file":"/tmp/.../a.json"}   parse a config (not timed)
//   {"cmd":"reset"}                                        empty the namespace's ruleset and the state dir, reopen
//   {"cmd":"apply","name":"a"}                             -> {"ok":true,"ms":12.3,"changed":true}
//   {"cmd":"add","mapping":{...}}  {"cmd":"remove","name":"m10"}   the agent API, timed the same way
import { readFile, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { parseConfigObject } from '../config/load.js';
import type { Config, MappingConfig } from '../config/schema.js';
import { Controller } from '../engine/controller.js';

export type WorkerCommand = { cmd: 'load'; name: string; file: string } | { cmd: 'reset' } | { cmd: 'apply'; name: string } | { cmd: 'add'; mapping: MappingConfig } | { cmd: 'remove'; name: string };
export type WorkerReply = { ok: true; ms?: number; changed?: boolean } | { ok: false; error: string };

const [netns, stateDir] = process.argv.slice(2);
if (!netns || !stateDir) {
  process.stderr.write('usage: library-worker NETNS STATE_DIR\n');
  process.exit(2);
}
const configs = new Map<string, Config>();
let controller: Controller | undefined;

async function handle(command: WorkerCommand): Promise<WorkerReply> {
  if (command.cmd === 'load') {
    configs.set(command.name, parseConfigObject(JSON.parse(await readFile(command.file, 'utf8'))));
    return { ok: true };
  }
  if (command.cmd === 'reset') {
    await execa('ip', ['netns', 'exec', netns!, 'nft', 'flush', 'ruleset']);
    await rm(stateDir!, { recursive: true, force: true });
    controller = await Controller.open({ netns: netns!, stateDir: stateDir! });
    return { ok: true };
  }
  controller ??= await Controller.open({ netns: netns!, stateDir: stateDir! });
  const opened = controller;
  let call: () => ReturnType<Controller['apply']>;
  if (command.cmd === 'add') call = () => opened.addMappings([command.mapping]);
  else if (command.cmd === 'remove') call = () => opened.removeMappings([command.name]);
  else {
    const config = configs.get(command.name);
    if (!config) return { ok: false, error: `no config ${command.name}` };
    call = () => opened.apply(config);
  }
  const start = process.hrtime.bigint();
  const result = await call();
  return { ok: true, ms: Number(process.hrtime.bigint() - start) / 1e6, changed: result.changed };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply: WorkerReply;
  try {
    reply = await handle(JSON.parse(line) as WorkerCommand);
  } catch (error) {
    reply = { ok: false, error: (error as Error).message.split('\n').slice(0, 3).join(' / ') };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
