// The fleet soak (docs/operations.md, "Fleet soak"): N host namespaces, each with its own
// `natctl watch` on a drop-in directory of M mappings (2 per fragment: two tcp host ports of one
// workload; tcp, because moving a udp mapping also clears its conntrack flows, one `conntrack`
// exec per mapping, which would measure that instead of the agent), and a driver that churns a share of the fragments every second
// (rewrite with a new target port, remove, re-add) for a bounded time. It reports the time from
// a fragment write to the kernel holding it (p50/p99), the CPU each agent used (its own and its
// nft children's), and whether any agent ever held a half-applied state (one mapping of a
// fragment without the other, or the two at different versions).
//
// "Serving" is probed by reading the kernel's ruleset (`nft list table inet natctl` in the
// namespace: the DNAT target of each mapping's chain), which is what decides every packet;
// test/e2e/watch.test.ts proves by packets that the agent's rules serve. Latencies are upper
// bounds: a write counts as served at the end of the first listing that shows it.
//
//   node dist/bench/fleet.js        (root; env NATCTL_FLEET_AGENTS=10 NATCTL_FLEET_MAPPINGS=1000
//                                    NATCTL_FLEET_SECONDS=30 NATCTL_FLEET_CHURN=0.05)
// Only namespaces it creates are touched, and they are deleted at the end, also on Ctrl-C.
import { mkdir, mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { isRoot } from '../backends/exec.js';
import { runEntry } from '../sandbox/entry.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
const env = (name: string, fallback: number): number => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};
const agents = Math.floor(env('NATCTL_FLEET_AGENTS', 10));
const mappings = Math.max(2, Math.floor(env('NATCTL_FLEET_MAPPINGS', 1000) / 2) * 2);
const churnSeconds = env('NATCTL_FLEET_SECONDS', 30);
const churnShare = env('NATCTL_FLEET_CHURN', 0.05);
const fragments = mappings / 2;
const target = '198.18.0.2';
const say = (text = ''): void => void process.stdout.write(`${text}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Op {
  fragment: number;
  /** Target port written (version), or undefined for a removal. */
  port: number | undefined;
  writtenAt: number;
  servedAt?: number;
  superseded?: boolean;
}

interface Agent {
  index: number;
  netns: string;
  dir: string;
  process?: ResultPromise;
  pid?: number;
  /** Desired state: fragment -> target port (absent: removed). */
  desired: Map<number, number>;
  latest: Map<number, Op>;
  ops: Op[];
  samples: number;
  halfApplied: number;
  regressions: number;
  seenPort: Map<number, number>;
  syncs: number;
  syncMs: number[];
  cpuStart?: number;
  cpuEnd?: number;
}

const fragmentText = (fragment: number, port: number): string =>
  JSON.stringify({
    version: 1,
    mappings: [
      { name: `f${fragment}-a`, proto: 'tcp', hostPort: 10000 + fragment, target: `${target}:${port}` },
      { name: `f${fragment}-b`, proto: 'tcp', hostPort: 30000 + fragment, target: `${target}:${port}` },
    ],
  });

async function put(agent: Agent, fragment: number, port: number): Promise<void> {
  const name = `f${String(fragment).padStart(5, '0')}.json`;
  const temp = join(agent.dir, `.${name}.tmp`);
  await writeFile(temp, fragmentText(fragment, port));
  await rename(temp, join(agent.dir, name));
}

async function remove(agent: Agent, fragment: number): Promise<void> {
  await unlink(join(agent.dir, `f${String(fragment).padStart(5, '0')}.json`));
}

/** Mapping name -> DNAT target port, as the kernel holds it. */
async function kernelTargets(netns: string): Promise<Map<string, number> | undefined> {
  const result = await execa('ip', ['netns', 'exec', netns, 'nft', 'list', 'table', 'inet', 'natctl'], { reject: false });
  if (result.exitCode !== 0) return undefined;
  const out = new Map<string, number>();
  for (const match of String(result.stdout).matchAll(/dnat ip to [0-9.]+:(\d+) comment "natctl mapping (\S+) /g)) out.set(match[2]!, Number(match[1]));
  return out;
}

/** utime+stime+cutime+cstime of a process, in seconds (its nft children count once reaped). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** One look at an agent's kernel: checks consistency, resolves pending writes. */
async function sample(agent: Agent): Promise<boolean> {
  const startedAt = Date.now();
  const targets = await kernelTargets(agent.netns);
  const at = Date.now();
  if (!targets) return false;
  agent.samples++;
  for (let f = 0; f < fragments; f++) {
    const a = targets.get(`f${f}-a`);
    const b = targets.get(`f${f}-b`);
    if (a !== b) agent.halfApplied++;
    if (a !== undefined) {
      const seen = agent.seenPort.get(f) ?? 0;
      if (a < seen) agent.regressions++;
      agent.seenPort.set(f, Math.max(seen, a));
    }
    const op = agent.latest.get(f);
    // Only a listing that started after the write completed can show it.
    if (op && op.servedAt === undefined && !op.superseded && startedAt >= op.writtenAt && a === op.port && b === op.port) op.servedAt = at;
  }
  return [...agent.desired].every(([f, port]) => targets.get(`f${f}-a`) === port) && targets.size === agent.desired.size * 2;
}

function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main(): Promise<number> {
  if (!isRoot()) {
    say('the fleet soak creates network namespaces and needs root');
    return 3;
  }
  const id = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
  const work = await mkdtemp(join(tmpdir(), 'natctl-fleet-'));
  const fleet: Agent[] = Array.from({ length: agents }, (_, index) => ({
    index, netns: `nc-fleet-${id}-${index}`, dir: join(work, `agent-${index}`, 'natctl.d'),
    desired: new Map(), latest: new Map(), ops: [], samples: 0, halfApplied: 0, regressions: 0, seenPort: new Map(), syncs: 0, syncMs: [],
  }));
  const created: string[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const agent of fleet) {
        if (agent.pid === undefined) continue;
        try {
          process.kill(agent.pid, 'SIGKILL');
        } catch {
          // already stopped
        }
      }
      await Promise.allSettled(fleet.map((a) => a.process));
      for (const ns of created) await execa('ip', ['netns', 'del', ns], { reject: false });
      await rm(work, { recursive: true, force: true });
    })());
  const onSignal = (): void => void cleanup().then(() => process.exit(130));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say(`fleet soak: ${agents} agents x ${mappings} mappings (${fragments} fragments of 2), churn ${churnShare * 100}% of fragments/s for ${churnSeconds} s`);
    for (const agent of fleet) {
      await execa('ip', ['netns', 'add', agent.netns]);
      created.push(agent.netns);
      await execa('ip', ['-n', agent.netns, 'link', 'set', 'lo', 'up']);
      await mkdir(agent.dir, { recursive: true });
      for (let f = 0; f < fragments; f++) {
        await put(agent, f, 1000);
        agent.desired.set(f, 1000);
      }
    }
    // Each agent runs inside its namespace with its own state dir, as one per node would.
    const started = Date.now();
    for (const agent of fleet) {
      const args = ['--state-dir', join(work, `agent-${agent.index}`, 'state'), 'watch', '-f', agent.dir, '--resync', '30', '--log-format', 'json'];
      agent.process = execa('ip', ['netns', 'exec', agent.netns, process.execPath, cli, ...args], { reject: false, stdin: 'ignore', buffer: false });
      agent.pid = agent.process.pid;
      let partial = '';
      agent.process.stderr?.on('data', (chunk: Buffer) => {
        partial += chunk.toString();
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.includes('"event":"sync"') || line.includes('"kind":"noop"')) continue;
          agent.syncs++;
          agent.syncMs.push(Number(/"durationMs":([0-9.]+)/.exec(line)?.[1] ?? Number.NaN));
        }
      });
    }
    const converge = async (limitMs: number): Promise<boolean> => {
      const deadline = Date.now() + limitMs;
      const done = new Set<number>();
      while (done.size < fleet.length && Date.now() < deadline) {
        for (const agent of fleet) if (!done.has(agent.index) && (await sample(agent))) done.add(agent.index);
        if (done.size < fleet.length) await sleep(200);
      }
      return done.size === fleet.length;
    };
    if (!(await converge(300_000))) throw new Error('the agents did not apply their initial fragments within 300 s');
    say(`initial state applied by every agent in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const agent of fleet) {
      agent.syncs = 0;
      agent.syncMs = [];
      agent.cpuStart = await cpuSeconds(agent.pid!);
    }

    // Churn: every 100 ms, a tenth of the per-second share of fragments, per agent.
    const churnStart = Date.now();
    const samplesBefore = fleet.reduce((n, a) => n + a.samples, 0);
    let running = true;
    const samplers = fleet.map(async (agent) => {
      while (running) {
        await sample(agent);
        await sleep(50);
      }
    });
    let nextPort = 1001;
    let written = 0;
    while (Date.now() - churnStart < churnSeconds * 1000) {
      // Paced by the clock, not by ticks: a busy event loop writes in bursts but keeps the rate.
      const count = Math.floor(((Date.now() - churnStart) / 1000) * fragments * churnShare) - written;
      written += count;
      await Promise.all(fleet.map(async (agent) => {
        for (let i = 0; i < count; i++) {
          const fragment = Math.floor(Math.random() * fragments);
          const previous = agent.latest.get(fragment);
          if (previous && previous.servedAt === undefined) previous.superseded = true;
          // Recorded before the write: an op is never resolved by a listing taken before it was written.
          const port = agent.desired.has(fragment) && Math.random() < 0.1 ? undefined : nextPort++;
          if (nextPort > 60000) nextPort = 1001;
          const op: Op = { fragment, port, writtenAt: Number.POSITIVE_INFINITY };
          agent.latest.set(fragment, op);
          agent.ops.push(op);
          if (port === undefined) {
            agent.desired.delete(fragment);
            await remove(agent, fragment);
          } else {
            agent.desired.set(fragment, port);
            await put(agent, fragment, port);
          }
          op.writtenAt = Date.now(); // the write is complete (renamed into place) now
        }
      }));
      await sleep(100);
    }
    const churnEnd = Date.now();
    running = false;
    await Promise.all(samplers);
    const churnSamples = fleet.reduce((n, a) => n + a.samples, 0) - samplesBefore;
    const converged = await converge(120_000);
    for (const agent of fleet) agent.cpuEnd = await cpuSeconds(agent.pid!);
    const wall = (Date.now() - churnStart) / 1000;

    // SIGTERM: every agent stops cleanly and its rules stay.
    for (const agent of fleet) process.kill(agent.pid!, 'SIGTERM');
    const exits = await Promise.all(fleet.map((a) => a.process!.then((r) => r.exitCode)));
    const kept = await Promise.all(fleet.map(async (a) => ((await kernelTargets(a.netns))?.size ?? 0) === a.desired.size * 2));
    for (const agent of fleet) agent.pid = undefined;

    const all = fleet.flatMap((a) => a.ops);
    const served = all.filter((o) => o.servedAt !== undefined).map((o) => o.servedAt! - o.writtenAt);
    const superseded = all.filter((o) => o.superseded).length;
    const unresolved = all.length - served.length - superseded;
    const halfApplied = fleet.reduce((n, a) => n + a.halfApplied, 0);
    const regressions = fleet.reduce((n, a) => n + a.regressions, 0);
    say(`churn: ${all.length} fragment writes in ${((churnEnd - churnStart) / 1000).toFixed(1)} s (${(all.length / agents / ((churnEnd - churnStart) / 1000)).toFixed(1)}/s per agent)`);
    say(`write -> kernel holds it: p50 ${percentile(served, 50)} ms, p99 ${percentile(served, 99)} ms, max ${percentile(served, 100)} ms (${served.length} measured, ${superseded} superseded by a newer write before being seen, ${unresolved} unresolved)`);
    say(`applies during churn: ${fleet.map((a) => a.syncs).join(', ')} (per agent; non-noop syncs); sync duration p50 ${percentile(fleet.flatMap((a) => a.syncMs), 50)} ms, p99 ${percentile(fleet.flatMap((a) => a.syncMs), 99)} ms`);
    say(`probe: one kernel listing per agent every ${((churnEnd - churnStart) / (churnSamples / agents)).toFixed(0)} ms on average (the latencies' resolution)`);
    say(`CPU per agent (own + nft children, over ${wall.toFixed(0)} s of churn and convergence): ${fleet.map((a) => `${(((a.cpuEnd ?? 0) - (a.cpuStart ?? 0)) / wall * 100).toFixed(0)}%`).join(', ')} of one core`);
    say(`half-applied states seen: ${halfApplied}; version regressions seen: ${regressions}; final state exact on every agent: ${converged}`);
    say(`SIGTERM: exit codes ${exits.join(', ')}; rules kept: ${kept.every(Boolean)}`);
    const ok = halfApplied === 0 && regressions === 0 && converged && exits.every((c) => c === 0) && kept.every(Boolean);
    say(ok ? 'fleet soak passed' : 'fleet soak FAILED');
    return ok ? 0 : 1;
  } finally {
    await cleanup();
  }
}

runEntry('fleet soak', main);
