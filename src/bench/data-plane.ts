// The data-plane half of the bench: new-connection rate from an outside namespace to a
// workload, through natctl's ruleset at N = 1 and the largest N, through the map-based
// reference at both, and with no NAT at all (the client connects to the workload's address,
// routed by the same host namespace, no ruleset). Each configuration lives in its own Sandbox
// (src/sandbox/topology.ts), set up once, so rounds can interleave without reloading: every
// point is measured right after a no-NAT round and followed by one, and its ratio is to the
// mean of those two. Client and server are pinned to the same CPU with taskset; every run is
// bounded in seconds and in connections.
import { cpus } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addr, Sandbox } from '../sandbox/topology.js';
import { benchConfig, ratePort, workload } from './configs.js';
import { formatMs } from './format.js';
import { clientScript, parseClientReport, serverScript } from './conn-rate.js';
import type { BenchOptions } from './options.js';
import { killChild, runTimed, startChild } from './proc.js';
import { referenceRuleset } from './reference.js';
import { median, type DataPlanePoint, type DataPlaneResult, type RulesetKind } from './results.js';
import { transportEnv } from './worker-client.js';

const cliScript = join(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');

interface Setup {
  point: DataPlanePoint;
  sandbox: Sandbox;
  /** Where the client connects: the host's outside address and a published port, or the workload itself. */
  host: string;
  port: number;
  usable: boolean;
}

export interface DataPlaneRun {
  options: BenchOptions;
  /** Largest N of the run: the second natctl / reference point. */
  maxN: number;
  workDir: string;
  /** Sandboxes are registered here as soon as they exist, for cleanup on a signal. */
  sandboxes: Sandbox[];
  log: (line: string) => void;
}

/** Order of the measured points in round `round`: rotated so no point is always first. */
export function roundOrder<T>(items: T[], round: number): T[] {
  if (items.length === 0) return [];
  const shift = round % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

export async function measureDataPlane(run: DataPlaneRun): Promise<DataPlaneResult> {
  const { options } = run;
  const cpu = Math.max(0, cpus().length - 1);
  const result: DataPlaneResult = { client: 'python3 (src/bench/conn-rate.ts), one connection at a time, RST close', cpu, rounds: options.dataPlane.rounds, secondsPerPoint: options.dataPlane.seconds, points: [] };
  if (options.dataPlane.rounds === 0) {
    result.note = 'not measured: NATCTL_BENCH_DP_ROUNDS=0';
    return result;
  }
  const python = await runTimed('python3', ['--version'], { timeoutMs: 10_000 });
  if (python.kind !== 'ok') {
    result.note = 'not measured: python3 not found (apt-get install python3)';
    return result;
  }
  const pin = ['taskset', '-c', String(cpu)];
  const setupLimitMs = Math.max(4 * options.opTimeoutMs, 120_000);
  const kinds: { ruleset: RulesetKind; n: number }[] = [{ ruleset: 'none', n: 0 }, { ruleset: 'natctl', n: 1 }, { ruleset: 'reference', n: 1 }];
  if (run.maxN > 1) kinds.push({ ruleset: 'natctl', n: run.maxN }, { ruleset: 'reference', n: run.maxN });
  const servers: { pid?: number | undefined }[] = [];

  const client = async (setup: Setup, seconds: number) => {
    const outcome = await runTimed('ip', ['netns', 'exec', setup.sandbox.ext, ...pin, 'python3', '-c', clientScript, setup.host, String(setup.port), String(seconds), String(options.dataPlane.maxConnections)], { timeoutMs: seconds * 1000 + 15_000 });
    return outcome.kind === 'ok' ? parseClientReport(outcome.stdout) : undefined;
  };

  /** Creates the sandbox, starts the rate server, loads the ruleset and checks it really NATs. */
  const prepare = async (setup: Setup): Promise<void> => {
    const { point, sandbox } = setup;
    await sandbox.create();
    const server = startChild('ip', ['netns', 'exec', sandbox.c1, ...pin, 'python3', '-c', serverScript, String(workload.ratePort)]);
    servers.push(server);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      server.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    if (!ready) {
      point.note = 'the rate server did not start';
      return;
    }
    run.log(`  data plane: setting up ${point.ruleset}${point.n ? ` N=${point.n}` : ''} in ${sandbox.host}`);
    if (point.ruleset === 'none') {
      // No NAT: the client reaches the workload's own address through the host namespace.
      await sandbox.ip(sandbox.ext, ['route', 'add', '198.18.0.0/24', 'via', addr.hostUp]);
      setup.host = workload.address;
      setup.port = workload.ratePort;
    } else if (point.ruleset === 'natctl') {
      const file = join(run.workDir, `dp-config-${point.n}.json`);
      await writeFile(file, JSON.stringify(benchConfig(point.n)));
      const applied = await runTimed(process.execPath, [cliScript, '--netns', sandbox.host, '--state-dir', sandbox.stateDir, 'apply', '-f', file], { timeoutMs: setupLimitMs, env: transportEnv(options.transports[0]!) });
      if (applied.kind !== 'ok') {
        point.note = `natctl apply ${applied.kind === 'timeout' ? `timed out (> ${setupLimitMs / 1000} s)` : `failed: ${applied.message}`}`;
        return;
      }
      point.setupMs = Math.round(applied.ms);
      run.log(`  data plane: natctl apply of ${point.n} mapping(s) took ${formatMs(applied.ms)}`);
    } else {
      const file = join(run.workDir, `dp-reference-${point.n}.nft`);
      await writeFile(file, referenceRuleset(point.n));
      const loaded = await runTimed('ip', ['netns', 'exec', sandbox.host, 'nft', '-f', file], { timeoutMs: setupLimitMs });
      if (loaded.kind !== 'ok') {
        point.note = `nft -f of the reference ${loaded.kind === 'timeout' ? 'timed out' : `failed: ${loaded.kind === 'failed' ? loaded.message : ''}`}`;
        return;
      }
    }
    // Before its numbers count: the client gets through, and for NAT the kernel shows the flow translated to the workload.
    const probe = await client(setup, 0.3);
    if (!probe || probe.ok === 0 || probe.errors > 0) {
      point.note = `not verified: ${probe ? `${probe.ok} connections, ${probe.errors} errors` : 'the client failed'}`;
      return;
    }
    if (point.ruleset !== 'none') {
      const flows = await runTimed('ip', ['netns', 'exec', sandbox.host, 'conntrack', '-L', '-p', 'tcp', '--dport', String(setup.port)], { timeoutMs: 30_000 });
      const translated = flows.kind === 'ok' && flows.stdout.split('\n').some((line) => line.includes(`src=${workload.address} dst=${addr.ext} sport=${workload.ratePort}`));
      if (!translated) {
        point.note = `not verified: conntrack shows no flow to port ${setup.port} translated to ${workload.address}:${workload.ratePort}`;
        return;
      }
    }
    setup.usable = true;
  };

  try {
    const setups: Setup[] = [];
    for (const kind of kinds) {
      const sandbox = new Sandbox(`b${kind.ruleset[0]}${kind.n}`.slice(0, 8));
      run.sandboxes.push(sandbox);
      const point: DataPlanePoint = { ruleset: kind.ruleset, n: kind.n, rates: [], ratios: [], extraUs: [] };
      result.points.push(point);
      const setup: Setup = { point, sandbox, host: addr.hostUp, port: ratePort(Math.max(kind.n, 1)), usable: false };
      setups.push(setup);
      try {
        await prepare(setup);
      } catch (error) {
        point.note = `setup failed: ${(error as Error).message.split('\n')[0]}`;
      }
    }

    const baseline = setups.find((s) => s.point.ruleset === 'none');
    if (!baseline?.usable) {
      result.note = `not measured: the no-NAT baseline did not work (${baseline?.point.note ?? 'no sandbox'})`;
      return result;
    }
    const measured = setups.filter((s) => s.usable && s !== baseline);
    const rate = async (setup: Setup): Promise<number | undefined> => {
      const report = await client(setup, options.dataPlane.seconds);
      return report && report.errors === 0 && report.ok > 0 ? report.ok / report.seconds : undefined;
    };
    for (let round = 0; round < options.dataPlane.rounds; round++) {
      let before = await rate(baseline);
      if (before !== undefined) baseline.point.rates.push(before);
      for (const setup of roundOrder(measured, round)) {
        const value = await rate(setup);
        const after = await rate(baseline);
        if (after !== undefined) baseline.point.rates.push(after);
        if (value !== undefined) {
          setup.point.rates.push(value);
          if (before !== undefined && after !== undefined) {
            const base = (before + after) / 2;
            setup.point.ratios.push(value / base);
            // One connection at a time on one CPU: 1/rate is the CPU time of one connection.
            setup.point.extraUs.push((1 / value - 1 / base) * 1e6);
          }
        }
        before = after;
      }
      run.log(`  data plane round ${round + 1}/${options.dataPlane.rounds}: ${measured.map((s) => `${s.point.ruleset}@${s.point.n} ${s.point.ratios.at(-1)?.toFixed(2) ?? '?'}`).join(', ')}`);
    }
    for (const point of result.points) {
      const rateMedian = median(point.rates);
      const ratioMedian = median(point.ratios);
      if (rateMedian !== undefined) point.medianRate = Math.round(rateMedian);
      if (ratioMedian !== undefined) point.medianRatio = Math.round(ratioMedian * 1000) / 1000;
      const extraMedian = median(point.extraUs);
      if (extraMedian !== undefined) point.medianExtraUs = Math.round(extraMedian * 10) / 10;
      point.extraUs = point.extraUs.map((us) => Math.round(us * 10) / 10);
      point.rates = point.rates.map(Math.round);
      point.ratios = point.ratios.map((r) => Math.round(r * 1000) / 1000);
    }
    return result;
  } finally {
    for (const server of servers) killChild(server);
  }
}
