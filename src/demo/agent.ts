// The node-agent demo (scripts/agent-demo.sh): builds a sandbox of namespaces, starts
// `natctl watch` on a drop-in directory inside the sandbox's host namespace, adds a fragment
// and shows it serving, shows /healthz and /metrics, removes the fragment, stops the agent
// (the rules stay), and tears everything down, also on Ctrl-C. Nothing outside the sandbox
// is touched; the agent's HTTP server listens on 127.0.0.1 inside the host namespace.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { isRoot } from '../backends/exec.js';
import { Sandbox, addr } from '../sandbox/topology.js';
import { runEntry } from '../sandbox/entry.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
const useColour = Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined;
const paint = (code: number, text: string): string => (useColour ? `\u001b[${code}m${text}\u001b[0m` : text);
const say = (text = ''): void => void process.stdout.write(`${text}\n`);
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

async function until(probe: () => Promise<string>, accept: (answer: string) => boolean, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await probe();
    if (accept(answer) || Date.now() > deadline) return answer;
    await sleep(100);
  }
}

async function main(): Promise<number> {
  if (!isRoot()) {
    say('the agent demo creates network namespaces and needs root: sudo ./scripts/agent-demo.sh');
    return 3;
  }
  const box = new Sandbox('agent');
  let agent: ResultPromise | undefined;
  const stopAgent = async (signal: NodeJS.Signals): Promise<void> => {
    if (agent?.pid === undefined || agent.exitCode !== null || agent.signalCode !== null) return;
    try {
      process.kill(agent.pid, signal);
    } catch {
      // already gone
    }
    await agent;
  };
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => (cleaning ??= stopAgent('SIGKILL').then(() => box.destroy()));
  const onSignal = (signal: NodeJS.Signals): void => {
    say(`\n${signal}: stopping the agent and removing the sandbox...`);
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say(paint(1, '1. building the sandbox'));
    await box.create();
    say(`   namespaces ${box.host} (host), ${box.c1} (workload on bridge lab0), ${box.ext} (outside client)`);
    await box.serve(box.c1, 'c1', { tcp: [80] });
    const dir = join(box.workDir, 'natctl.d');
    await mkdir(dir);
    const put = async (name: string, text: string): Promise<void> => {
      await writeFile(join(dir, `.${name}.tmp`), text);
      await rename(join(dir, `.${name}.tmp`), join(dir, name)); // atomic: write, then rename
    };
    await put('00-network.yaml', 'version: 1\nnetworks:\n  - name: lab0\n    subnets: [198.18.0.0/24]\n');

    say(paint(1, '\n2. natctl watch on the drop-in directory'));
    const args = ['--netns', box.host, '--state-dir', box.stateDir, 'watch', '-f', dir, '--listen', '127.0.0.1:0', '--resync', '10'];
    say(`   ip netns exec ${box.host} natctl ${args.join(' ')}`);
    agent = execa('ip', ['netns', 'exec', box.host, process.execPath, cli, ...args], { reject: false, stdin: 'ignore', buffer: false, env: { NO_COLOR: '1' } });
    let port = 0;
    const listening = new Promise<void>((ready) => {
      agent?.stderr?.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          say(paint(2, `   agent | ${line}`));
          const match = /listen=\S+:(\d+)/.exec(line);
          if (match) {
            port = Number(match[1]);
            ready();
          }
        }
      });
    });
    await Promise.race([listening, agent.then(() => Promise.reject(new Error('natctl watch exited')))]);
    const http = async (path: string): Promise<string> => (await box.exec(box.host, 'curl', ['-s', '-m', '5', '-w', ' (HTTP %{http_code})', `http://127.0.0.1:${port}${path}`])).stdout.replace('\n (HTTP', ' (HTTP');
    say(`   /healthz: ${await until(() => http('/healthz'), (a) => a.includes('HTTP 200'))}`);

    let failures = 0;
    const check = (ok: boolean, label: string, detail: string): void => {
      if (!ok) failures++;
      say(`   ${ok ? paint(32, 'ok  ') : paint(31, 'FAIL')} ${label.padEnd(10)} ${detail}`);
    };

    say(paint(1, '\n3. a provisioning agent drops in a fragment: web.yaml'));
    const fragment = `version: 1\nmappings:\n  - name: web\n    network: lab0\n    hostPort: 8080\n    target: ${addr.c1}:80\n`;
    say(fragment.replace(/^/gm, '   '));
    const written = Date.now();
    await put('web.yaml', fragment);
    const served = await until(() => box.connect(box.ext, 'tcp', addr.hostUp, 8080), (a) => a.startsWith('c1'));
    check(served === `c1 ${addr.ext} 80`, 'serving', `outside ${addr.ext} -> ${addr.hostUp}:8080 answered "${served}" ${Date.now() - written} ms after the write`);

    say(paint(1, '\n4. /metrics (natctl_ lines, excerpt)'));
    // Packets flow as soon as the kernel holds the batch; the sync finishes after verifying and recording it.
    const metrics = await until(() => http('/metrics'), (m) => m.includes('natctl_mappings_managed 1'));
    for (const line of metrics.split('\n').filter((l) => /^natctl_(syncs_total\{[^}]*result="ok"\} [1-9]|sync_duration_seconds_count|mappings_managed|config_valid|drift_repairs_total|last_successful)/.test(l))) say(`   ${line}`);

    say(paint(1, '\n5. the workload goes: rm web.yaml'));
    await rm(join(dir, 'web.yaml'));
    const gone = await until(() => box.connect(box.ext, 'tcp', addr.hostUp, 8080), (a) => a.startsWith('ERR'));
    check(gone === 'ERR ECONNREFUSED', 'removed', `outside -> ${addr.hostUp}:8080 now "${gone}"`);

    say(paint(1, '\n6. SIGTERM: the agent stops, natctl\'s table stays'));
    await put('web.yaml', fragment);
    await until(() => box.connect(box.ext, 'tcp', addr.hostUp, 8080), (a) => a.startsWith('c1'));
    await stopAgent('SIGTERM');
    const after = await box.connect(box.ext, 'tcp', addr.hostUp, 8080);
    check(after === `c1 ${addr.ext} 80`, 'rules stay', `after the agent stopped (exit ${agent.exitCode}): "${after}"`);

    say(`\n${failures ? paint(31, `${failures} check(s) failed`) : paint(32, 'all checks passed')}; removing the sandbox`);
    return failures ? 1 : 0;
  } finally {
    await cleanup();
  }
}

runEntry('agent demo', main);
