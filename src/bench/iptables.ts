// node dist/bench/iptables.js: the iptables-legacy backend's two planes, in namespaces of its
// own (src/sandbox), bounded in time (issue 9, item 5):
//   control plane: apply of N mappings vs a raw iptables-legacy-restore of natctl's own render
//                  (the same four payloads); add one mapping at N vs at 10;
//   data plane:    TCP connection rate through DNAT at N mappings vs no NAT, vs 1 mapping, and
//                  vs Docker's classic layout (one linear DNAT rule per port) at N.
// Ratios matter, not absolute times: six engineers share two cores here. Needs root.
// Env: NATCTL_BENCH_IPT_SIZE (default 10000), NATCTL_BENCH_ROUNDS (5), NATCTL_BENCH_SECONDS (2).
import net from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { createRunner, isRoot } from '../backends/exec.js';
import { IptablesBackend } from '../backends/iptables/backend.js';
import { renderIptablesRules, tableText } from '../backends/iptables/render.js';
import { restoreCommand } from '../backends/iptables/rules.js';
import { parseConfigObject } from '../config/load.js';
import { Controller } from '../engine/controller.js';
import { buildModel } from '../model/build.js';
import { Sandbox, addr } from '../sandbox/topology.js';

const size = Number(process.env.NATCTL_BENCH_IPT_SIZE ?? '10000');
const rounds = Number(process.env.NATCTL_BENCH_ROUNDS ?? '5');
const seconds = Number(process.env.NATCTL_BENCH_SECONDS ?? '2');
const basePort = 10000;

/** `count` mappings to c1:80 (variant 1 moves every odd mapping to c2, so each apply changes the kernel). */
function config(count: number, variant = 0): ReturnType<typeof parseConfigObject> {
  const mappings = Array.from({ length: count }, (_, i) => ({
    name: `m${i}`,
    hostPort: basePort + i,
    target: `${variant && i % 2 ? addr.c2 : addr.c1}:80`,
  }));
  return parseConfigObject({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }], mappings });
}

/** Docker's classic layout: one linear rule per published port, nat and filter. */
function dockerStyle(count: number): string {
  const nat = ['*nat', ':NATCTL-DOCKER - [0:0]', '-I PREROUTING 1 -m addrtype --dst-type LOCAL -j NATCTL-DOCKER'];
  const filter = ['*filter', ':NATCTL-DOCKERF - [0:0]', '-I FORWARD 1 -j NATCTL-DOCKERF'];
  for (let i = 0; i < count; i++) {
    nat.push(`-A NATCTL-DOCKER -p tcp -m tcp --dport ${basePort + i} -j DNAT --to-destination ${addr.c1}:80`);
    filter.push(`-A NATCTL-DOCKERF -d ${addr.c1}/32 -p tcp -m tcp --dport ${i === count - 1 ? 80 : 20000 + i} -j ACCEPT`);
  }
  return [...nat, 'COMMIT', ...filter, 'COMMIT', ''].join('\n');
}

const med = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)] ?? 0;

/** Client mode (run inside the client namespace): connections completed per second, 16 at a time, for `ms`. */
async function client(host: string, port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  let done = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      await new Promise<void>((resolve) => {
        const socket = net.connect({ host, port });
        socket.setTimeout(2000);
        socket.on('data', () => undefined);
        socket.on('end', () => {
          done++;
          socket.destroy();
          resolve();
        });
        const fail = (): void => {
          failed++;
          socket.destroy();
          resolve();
        };
        socket.on('error', fail);
        socket.on('timeout', fail);
      });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  process.stdout.write(`${JSON.stringify({ rate: (done * 1000) / ms, failed })}\n`);
}

async function main(): Promise<number> {
  if (!isRoot()) {
    process.stderr.write('bench: needs root (it creates scratch network namespaces)\n');
    return 3;
  }
  const box = new Sandbox('bipt');
  const self = fileURLToPath(import.meta.url);
  try {
    await box.create();
    await box.serve(box.c1, 'c1', { tcp: [80] });
    await box.serve(box.c2, 'c2', { tcp: [80] });
    // The no-NAT baseline dials the workload directly, routed through the host.
    await box.ip(box.ext, ['route', 'add', '198.18.0.0/24', 'via', addr.hostUp]);
    const stateDir = join(box.workDir, 'state');
    const controller = await Controller.open({ netns: box.host, stateDir, backend: 'iptables-legacy' });
    const rate = async (host: string, port: number): Promise<number> => {
      const run = await execa('ip', ['netns', 'exec', box.ext, process.execPath, self, 'client', host, String(port), String(seconds * 1000)]);
      const { rate: value, failed } = JSON.parse(String(run.stdout)) as { rate: number; failed: number };
      // A connection lost now and then on a loaded 2-core machine (a SYN retransmit beyond the
      // client's 2 s timeout) is counted and reported, not a reason to throw the run away.
      if (failed) failures.push(`${failed} to ${host}:${port}`);
      return value;
    };
    const out: string[] = [];
    const failures: string[] = [];
    const say = (line: string): void => {
      out.push(line);
      process.stdout.write(`${line}\n`);
    };
    say(`iptables-legacy bench: ${size} mappings, median of ${rounds} rounds, ${seconds} s per rate sample, netns ${box.host}`);

    // Control plane, each kind in a namespace of its own so samples interleave round by round (the machine is noisy).
    const scratch: string[] = [];
    const namespace = async (label: string): Promise<string> => {
      const name = `${box.host.slice(0, -2)}-${label}`;
      await execa('ip', ['netns', 'add', name]);
      scratch.push(name);
      return name;
    };
    try {
      const big = [config(size, 0), config(size, 1)];
      const rawNs = await namespace('raw');
      const files: { family: 4 | 6; file: string }[][] = [];
      for (const v of [0, 1]) {
        const list: { family: 4 | 6; file: string }[] = [];
        for (const [i, table] of renderIptablesRules(buildModel(big[v]!)).tables.entries()) {
          const file = join(box.workDir, `raw-${v}-${i}.rules`);
          await writeFile(file, tableText(table));
          list.push({ family: table.family, file });
        }
        files.push(list);
      }
      const rawRestore = async (v: number): Promise<void> => {
        for (const { family, file } of files[v]!) await execa('ip', ['netns', 'exec', rawNs, restoreCommand(family), '--noflush', '--wait=10', file]);
      };
      // Jumps go in once; later raw restores only replace natctl's chains, as natctl's loads do.
      await rawRestore(0);
      for (const list of files) for (const entry of list) await writeFile(entry.file, (await readFile(entry.file, 'utf8')).replace(/^-I .*\n/gm, ''));
      // The kernel's floor for "add one": iptables-legacy replaces a whole table on every change, so a restore costs O(table).
      const raw10Ns = await namespace('r10');
      const smallFiles: { family: 4 | 6; file: string }[][] = [];
      for (const v of [0, 1]) {
        const list: { family: 4 | 6; file: string }[] = [];
        for (const [i, table] of renderIptablesRules(buildModel(config(10 + v))).tables.entries()) {
          const file = join(box.workDir, `raw10-${v}-${i}.rules`);
          await writeFile(file, tableText(table));
          list.push({ family: table.family, file });
        }
        smallFiles.push(list);
      }
      const raw10Restore = async (v: number): Promise<void> => {
        for (const { family, file } of smallFiles[v]!) await execa('ip', ['netns', 'exec', raw10Ns, restoreCommand(family), '--noflush', '--wait=10', file]);
      };
      await raw10Restore(0);
      for (const list of smallFiles) for (const entry of list) await writeFile(entry.file, (await readFile(entry.file, 'utf8')).replace(/^-I .*\n/gm, ''));
      const backendNs = await namespace('be');
      const backend = new IptablesBackend({ runner: createRunner(backendNs) });
      const rulesets = big.map((c) => backend.render(buildModel(c)));
      const backendApply = async (v: number): Promise<void> => {
        await backend.read();
        await backend.load(rulesets[v]!);
        const problems = backend.verify(rulesets[v]!, await backend.read());
        if (problems.length) throw new Error(problems.join('; '));
      };
      await backendApply(0);
      const applyNs = await namespace('ap');
      const bigController = await Controller.open({ netns: applyNs, stateDir: join(box.workDir, 'state-ap'), backend: 'iptables-legacy' });
      await bigController.apply(big[0]!);
      const smallNs = await namespace('sm');
      const smallController = await Controller.open({ netns: smallNs, stateDir: join(box.workDir, 'state-sm'), backend: 'iptables-legacy' });
      const addBig = [config(size), config(size + 1)];
      const addSmall = [config(10), config(11)];
      await smallController.apply(addSmall[0]!);
      const times = { raw10: [] as number[], raw: [] as number[], backend: [] as number[], apply: [] as number[], addBig: [] as number[], addSmall: [] as number[] };
      const timed = async (list: number[], run: () => Promise<unknown>): Promise<void> => {
        const begin = process.hrtime.bigint();
        await run();
        list.push(Number(process.hrtime.bigint() - begin) / 1e6);
      };
      for (let r = 1; r <= rounds; r++) {
        const v = r % 2;
        await timed(times.raw, () => rawRestore(v));
        await timed(times.raw10, () => raw10Restore(v));
        await timed(times.backend, () => backendApply(v));
        await timed(times.apply, () => bigController.apply(big[v]!));
        await timed(times.addSmall, () => smallController.apply(addSmall[v]!));
      }
      // Last: the big apply namespace now holds variant 1; move it to the add-one pair.
      await bigController.apply(addBig[0]!);
      for (let r = 1; r <= rounds; r++) await timed(times.addBig, () => bigController.apply(addBig[r % 2]!));
      const raw = med(times.raw);
      say(`apply ${size} (library, every apply a changed ruleset): ${med(times.apply).toFixed(0)} ms; the backend's own part (read, load, read back, verify): ${med(times.backend).toFixed(0)} ms; raw restores of the same render (${files[0]!.length} tables): ${raw.toFixed(0)} ms`);
      say(`  apply / raw ${(med(times.apply) / raw).toFixed(2)} (target <= 2); backend / raw ${(med(times.backend) / raw).toFixed(2)}`);
      say(`add one mapping (library apply): at 10 ${med(times.addSmall).toFixed(0)} ms, at ${size} ${med(times.addBig).toFixed(0)} ms; ratio ${(med(times.addBig) / med(times.addSmall)).toFixed(2)} (target <= 2)`);
      say(`  the kernel's floor: raw restores of natctl's render at 10 ${med(times.raw10).toFixed(0)} ms vs at ${size} ${raw.toFixed(0)} ms (${(raw / med(times.raw10)).toFixed(1)}x): iptables-legacy rewrites a whole table on every change`);
    } finally {
      for (const name of scratch) await execa('ip', ['netns', 'del', name], { reject: false });
    }

    // Data plane. The mapping probed is the last one (the deepest port), through the host's outside address.
    const last = basePort + size - 1;
    const samples = { none: [] as number[], one: [] as number[], many: [] as number[], docker: [] as number[] };
    const dockerFile = join(box.workDir, 'docker.rules');
    await writeFile(dockerFile, dockerStyle(size));
    const one = config(1);
    const big = [config(size, 0)];
    const steps: (() => Promise<void>)[] = [
      async () => {
        await controller.flush();
        samples.none.push(await rate(addr.c1, 80));
      },
      async () => {
        await controller.apply(one);
        samples.one.push(await rate(addr.hostUp, basePort));
        await controller.flush();
      },
      async () => {
        await controller.apply(big[0]!);
        samples.many.push(await rate(addr.hostUp, last));
        await controller.flush();
      },
      async () => {
        await execa('ip', ['netns', 'exec', box.host, 'iptables-legacy-restore', '--noflush', '--wait=10', dockerFile]);
        samples.docker.push(await rate(addr.hostUp, last));
        await execa('ip', ['netns', 'exec', box.host, 'sh', '-c', 'iptables-legacy -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j NATCTL-DOCKER && iptables-legacy -t nat -F NATCTL-DOCKER && iptables-legacy -t nat -X NATCTL-DOCKER && iptables-legacy -D FORWARD -j NATCTL-DOCKERF && iptables-legacy -F NATCTL-DOCKERF && iptables-legacy -X NATCTL-DOCKERF']);
      },
    ];
    // The order rotates round by round, so a busy moment of the machine does not always hit the same case.
    for (let r = 0; r < rounds; r++) for (let i = 0; i < steps.length; i++) await steps[(i + r) % steps.length]!();
    const none = med(samples.none);
    say(`connections/s: no NAT ${none.toFixed(0)}, 1 mapping ${med(samples.one).toFixed(0)}, ${size} mappings ${med(samples.many).toFixed(0)}, Docker-style linear ${size} ${med(samples.docker).toFixed(0)}`);
    if (failures.length) say(`  connections that failed (2 s client timeout): ${failures.join(', ')}`);
    say(`  ${size} mappings / no NAT: ${(med(samples.many) / none).toFixed(2)} (target >= 0.5); / 1 mapping: ${(med(samples.many) / med(samples.one)).toFixed(2)} (target >= 0.8); 1 mapping / no NAT: ${(med(samples.one) / none).toFixed(2)}; Docker-style / no NAT: ${(med(samples.docker) / none).toFixed(2)}`);
    return 0;
  } finally {
    await box.destroy();
  }
}

if (process.argv[2] === 'client') {
  await client(process.argv[3] ?? '', Number(process.argv[4]), Number(process.argv[5]));
} else {
  main().then((code) => {
    process.exitCode = code;
  }, (error: unknown) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
