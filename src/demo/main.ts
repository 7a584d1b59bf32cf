// The quick-start demo: builds a sandbox of namespaces (a host, two workloads, an outside
// client), publishes ports with natctl, sends traffic through each kind of mapping, shows
// `natctl status`, and tears everything down, also on Ctrl-C.
import { isRoot } from '../backends/exec.js';
import { Sandbox, addr } from '../sandbox/topology.js';
import { runEntry } from '../sandbox/entry.js';

const useColour = Boolean(process.stdout.isTTY) && process.env.NO_COLOR === undefined;
const paint = (code: number, text: string): string => (useColour ? `\u001b[${code}m${text}\u001b[0m` : text);
const say = (text = ''): void => void process.stdout.write(`${text}\n`);

const demoConfig = `# natctl demo config: the host publishes ports of two workloads on bridge lab0
version: 1
networks:
  - name: lab0
    subnets: [198.18.0.0/24, "fd00:18::/64"]
mappings:
  - name: web                     # external, local and hairpin clients
    hostPort: 8080
    target: ${addr.c1}:80
  - name: web6
    hostPort: 8080
    target: "[${addr.c1v6}]:80"
  - name: ports                   # a range, port for port
    hostPort: "31000-31002"
    target: ${addr.c1}
  - name: dns
    proto: udp
    hostPort: 5353
    target: ${addr.c2}:53
  - publish: "8443:80"            # Docker -p syntax
    target: ${addr.c2}
block:
  - hostPort: 8443                # only ${addr.ext} may reach 8443
    except: [${addr.ext}/32]
`;

interface Check {
  label: string;
  from: string;
  run: () => Promise<string>;
  expect: (answer: string) => boolean;
  explain: string;
}

async function main(): Promise<number> {
  if (!isRoot()) {
    say('the demo creates network namespaces and needs root: run ./scripts/demo.sh as root (it uses sudo itself when you are not)');
    return 3;
  }
  const box = new Sandbox('demo');
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => (cleaning ??= box.destroy());
  const onSignal = (signal: NodeJS.Signals): void => {
    say(`\n${signal}: removing the sandbox...`);
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say(paint(1, '1. building the sandbox'));
    await box.create();
    say(`   namespaces ${box.host} (host), ${box.c1} and ${box.c2} (workloads on bridge lab0), ${box.ext} (outside client)`);
    await box.serve(box.c1, 'c1', { tcp: [80, 31000, 31001, 31002] });
    await box.serve(box.c2, 'c2', { tcp: [80], udp: [53] });
    await box.serve(box.ext, 'ext', { tcp: [7000] });
    say('   each workload answers "NAME SOURCE-IT-SAW PORT"');

    say(paint(1, '\n2. the config'));
    const file = await box.writeConfig('natctl.yaml', demoConfig);
    say(demoConfig.replace(/^/gm, '   '));

    say(paint(1, `3. natctl --netns ${box.host} apply -f natctl.yaml`));
    const applied = await box.natctl(['apply', '-f', file]);
    say((applied.stdout + applied.stderr).replace(/^/gm, '   '));
    if (applied.exitCode !== 0) return applied.exitCode;

    say(paint(1, '4. traffic'));
    const checks: Check[] = [
      { label: 'external', from: `outside ${addr.ext}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp, 8080), expect: (a) => a === `c1 ${addr.ext} 80`, explain: 'DNAT; the workload sees the real client' },
      { label: 'local', from: 'the host itself', run: () => box.connect(box.host, 'tcp', addr.hostUp, 8080), expect: (a) => a.startsWith('c1 '), explain: 'DNAT in the output hook' },
      { label: 'hairpin', from: `workload ${addr.c2}`, run: () => box.connect(box.c2, 'tcp', addr.hostUp, 8080), expect: (a) => a === `c1 ${addr.bridge4} 80`, explain: 'DNAT back into the bridge + masquerade' },
      { label: 'ipv6', from: `outside ${addr.ext6}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp6, 8080), expect: (a) => a === `c1 ${addr.ext6} 80`, explain: 'the same mapping over IPv6' },
      { label: 'range', from: `outside ${addr.ext}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp, 31001), expect: (a) => a === `c1 ${addr.ext} 31001`, explain: 'one map entry for 31000-31002' },
      { label: 'udp', from: `outside ${addr.ext}`, run: () => box.connect(box.ext, 'udp', addr.hostUp, 5353), expect: (a) => a === `c2 ${addr.ext} 53`, explain: 'udp 5353 -> 53' },
      { label: 'egress', from: `workload ${addr.c1}`, run: () => box.connect(box.c1, 'tcp', addr.ext, 7000), expect: (a) => a === `ext ${addr.hostUp} 7000`, explain: 'outbound masquerade: the outside sees the host' },
      { label: 'excepted', from: `outside ${addr.ext}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp, 8443, { bind: addr.ext }), expect: (a) => a === `c2 ${addr.ext} 80`, explain: 'block rule, but this source is excepted' },
      { label: 'blocked', from: `outside ${addr.ext2}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp, 8443, { bind: addr.ext2 }), expect: (a) => a === 'ERR timeout', explain: 'dropped by the block rule (DOCKER-USER style)' },
      { label: 'closed', from: `outside ${addr.ext}`, run: () => box.connect(box.ext, 'tcp', addr.hostUp, 9999), expect: (a) => a === 'ERR ECONNREFUSED', explain: 'nothing published on 9999' },
    ];
    let failures = 0;
    for (const check of checks) {
      const answer = await check.run();
      const ok = check.expect(answer);
      if (!ok) failures++;
      say(`   ${ok ? paint(32, 'ok  ') : paint(31, 'FAIL')} ${check.label.padEnd(9)} from ${check.from.padEnd(22)} -> ${answer.padEnd(26)} ${paint(2, check.explain)}`);
    }

    say(paint(1, `\n5. natctl --netns ${box.host} status`));
    const status = await box.natctl(['status']);
    say(status.stdout.replace(/^/gm, '   '));

    say(paint(1, '6. the ruleset natctl loaded (nft list table inet natctl), first lines'));
    say((await box.nft(['list', 'table', 'inet', 'natctl'])).split('\n').slice(0, 12).join('\n').replace(/^/gm, '   '));
    say(`   ...\n\n${failures ? paint(31, `${failures} check(s) failed`) : paint(32, 'all checks passed')}; removing the sandbox`);
    return failures ? 1 : 0;
  } finally {
    await cleanup();
  }
}

runEntry('demo', main);
