// A sandbox of network namespaces (docs/kernel-facts.md, "The test topology") for the end-to-end tests and the demo: host
// (natctl runs here), two workloads on a bridge, and an outside client. Everything is created
// under names unique to this run and deleted by destroy() (tests: afterAll; demo: finally
// and on signals). Addresses come from
// 198.18.0.0/15 and fd00::/8 only; the root namespace is never touched.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ResultPromise, execa } from 'execa';

const distRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Both scripts run from the build (dist/), whether this module is loaded from src/ by tests or from dist/. */
const peerScript = join(distRoot, '..', 'dist/sandbox/peer.js');
const cliScript = join(distRoot, '..', 'dist/cli/main.js');

/** Addresses of the sandbox, for configs and assertions. */
export const addr = {
  bridge4: '198.18.0.1', bridge6: 'fd00:18::1',
  c1: '198.18.0.2', c1v6: 'fd00:18::2',
  c2: '198.18.0.3', c2v6: 'fd00:18::3',
  hostUp: '198.19.0.1', hostUp6: 'fd00:19::1',
  ext: '198.19.0.2', ext2: '198.19.0.3', ext6: 'fd00:19::2',
  /** Extra local addresses of the host, for host-IP bindings. */
  hostLocalA: '198.18.1.1', hostLocalB: '198.18.1.2',
  snatPool: ['198.19.0.5', '198.19.0.6', '198.19.0.7'],
} as const;

export interface NatctlRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class Sandbox {
  readonly host: string;
  readonly c1: string;
  readonly c2: string;
  readonly ext: string;
  workDir = '';
  stateDir = '';
  private readonly servers: ResultPromise[] = [];
  private readonly namespaces: string[] = [];

  constructor(label: string) {
    const id = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    this.host = `nc-${label}-${id}-h`;
    this.c1 = `nc-${label}-${id}-c1`;
    this.c2 = `nc-${label}-${id}-c2`;
    this.ext = `nc-${label}-${id}-x`;
  }

  async ip(netns: string, args: string[]): Promise<void> {
    await execa('ip', ['-n', netns, ...args]);
  }

  async exec(netns: string, command: string, args: string[]): Promise<NatctlRun> {
    const result = await execa('ip', ['netns', 'exec', netns, command, ...args], { reject: false });
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  async create(): Promise<this> {
    this.workDir = await mkdtemp(join(tmpdir(), 'natctl-e2e-'));
    this.stateDir = join(this.workDir, 'state');
    for (const ns of [this.host, this.c1, this.c2, this.ext]) {
      await execa('ip', ['netns', 'add', ns]);
      this.namespaces.push(ns);
      await this.ip(ns, ['link', 'set', 'lo', 'up']);
    }
    const h = this.host;
    await this.exec(h, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await this.ip(h, ['link', 'add', 'lab0', 'type', 'bridge']);
    await this.ip(h, ['addr', 'add', '198.18.0.1/24', 'dev', 'lab0']);
    await this.ip(h, ['addr', 'add', 'fd00:18::1/64', 'dev', 'lab0', 'nodad']);
    await this.ip(h, ['link', 'set', 'lab0', 'up']);
    for (const [ns, port, v4, v6] of [[this.c1, 'vc1', addr.c1, addr.c1v6], [this.c2, 'vc2', addr.c2, addr.c2v6]] as const) {
      await this.ip(h, ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await this.ip(h, ['link', 'set', port, 'master', 'lab0', 'up']);
      await this.ip(ns, ['addr', 'add', `${v4}/24`, 'dev', 'eth0']);
      await this.ip(ns, ['addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad']);
      await this.ip(ns, ['link', 'set', 'eth0', 'up']);
      await this.ip(ns, ['route', 'add', 'default', 'via', addr.bridge4]);
      await this.ip(ns, ['-6', 'route', 'add', 'default', 'via', addr.bridge6]);
    }
    await this.ip(h, ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ext]);
    await this.ip(h, ['addr', 'add', `${addr.hostUp}/24`, 'dev', 'up0']);
    for (const a of addr.snatPool) await this.ip(h, ['addr', 'add', `${a}/32`, 'dev', 'up0']);
    await this.ip(h, ['addr', 'add', `${addr.hostUp6}/64`, 'dev', 'up0', 'nodad']);
    await this.ip(h, ['link', 'set', 'up0', 'up']);
    await this.ip(h, ['addr', 'add', `${addr.hostLocalA}/32`, 'dev', 'lo']);
    await this.ip(h, ['addr', 'add', `${addr.hostLocalB}/32`, 'dev', 'lo']);
    const x = this.ext;
    await this.ip(x, ['addr', 'add', `${addr.ext}/24`, 'dev', 'eth0']);
    await this.ip(x, ['addr', 'add', `${addr.ext2}/24`, 'dev', 'eth0']);
    await this.ip(x, ['addr', 'add', `${addr.ext6}/64`, 'dev', 'eth0', 'nodad']);
    await this.ip(x, ['link', 'set', 'eth0', 'up']);
    // The outside client reaches the host's extra local addresses through the host; never the workloads directly.
    await this.ip(x, ['route', 'add', '198.18.1.0/24', 'via', addr.hostUp]);
    return this;
  }

  /** Starts a peer server in `netns`; resolves once it listens. Killed by PID in destroy(). */
  async serve(netns: string, name: string, ports: { tcp?: number[]; udp?: number[] }): Promise<void> {
    const args = ['netns', 'exec', netns, process.execPath, peerScript, 'serve', name];
    if (ports.tcp?.length) args.push('--tcp', ports.tcp.join(','));
    if (ports.udp?.length) args.push('--udp', ports.udp.join(','));
    const server = execa('ip', args, { reject: false, stdin: 'ignore' });
    this.servers.push(server);
    await new Promise<void>((resolveReady, rejectReady) => {
      const timer = setTimeout(() => rejectReady(new Error(`server ${name} in ${netns} did not start`)), 10_000);
      server.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
    });
  }

  /** Connects from `netns`; returns the server's answer ("NAME PEER PORT") or "ERR reason". */
  async connect(netns: string, proto: 'tcp' | 'udp', host: string, port: number, options: { bind?: string; sport?: number; timeoutMs?: number } = {}): Promise<string> {
    const args = ['netns', 'exec', netns, process.execPath, peerScript, 'connect', proto, host, String(port), '--timeout', String(options.timeoutMs ?? 1500)];
    if (options.bind) args.push('--bind', options.bind);
    if (options.sport) args.push('--sport', String(options.sport));
    const result = await execa('ip', args, { reject: false });
    return String(result.stdout).trim();
  }

  /** Runs the built natctl CLI against the host namespace with this sandbox's state dir. */
  async natctl(args: string[], env: Record<string, string> = {}): Promise<NatctlRun> {
    const result = await execa(process.execPath, [cliScript, '--netns', this.host, '--state-dir', this.stateDir, ...args], { reject: false, env, stdin: 'ignore' });
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  async writeConfig(name: string, content: unknown): Promise<string> {
    const file = join(this.workDir, name);
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2), { mode: 0o600 });
    return file;
  }

  async nft(args: string[]): Promise<string> {
    const result = await execa('ip', ['netns', 'exec', this.host, 'nft', ...args]);
    return String(result.stdout);
  }

  async destroy(): Promise<void> {
    for (const server of this.servers) {
      if (server.pid !== undefined) {
        try {
          process.kill(server.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await Promise.allSettled(this.servers);
    for (const ns of this.namespaces) await execa('ip', ['netns', 'del', ns], { reject: false });
    if (this.workDir) await rm(this.workDir, { recursive: true, force: true });
  }
}
