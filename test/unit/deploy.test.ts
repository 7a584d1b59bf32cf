// deploy/: the systemd unit and the Kubernetes DaemonSet users copy (docs/operations.md). Parsed
// and checked for what matters: capabilities and hardening, probe path and port matching
// --listen, mount paths matching -f and --state-dir, flags natctl watch really has, example
// fragments natctl accepts, and docs/operations.md quoting the files exactly.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfigDirectory } from '../../src/config/fragments.js';
import { repoRoot } from '../helpers/topology.js';

const cli = join(repoRoot, 'dist/cli/main.js');
const read = (path: string): Promise<string> => readFile(join(repoRoot, path), 'utf8');

/** The value after `flag` in an argument list. */
function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

async function watchFlags(): Promise<string[]> {
  const help = [String((await execa(process.execPath, [cli, 'watch', '--help'])).stdout), String((await execa(process.execPath, [cli, '--help'])).stdout)].join('\n');
  return [...help.matchAll(/(?:^|[\s,])(--?[a-z][a-z-]*)/gm)].map((m) => m[1]!);
}

/** systemd unit -> { key: [values...] } (keys may repeat). */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) out.set(match[1]!, [...(out.get(match[1]!) ?? []), match[2]!]);
  }
  return out;
}

interface Container {
  args: string[];
  env?: { name: string }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string | number } };
  readinessProbe?: { httpGet: { path: string; port: string | number } };
  securityContext: { capabilities: { add: string[]; drop?: string[] }; privileged?: boolean };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  configMap?: { name: string };
  hostPath?: { path: string; type?: string };
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: { template: { spec: { hostNetwork: boolean; containers: Container[]; volumes: Volume[] } } };
}

describe('deploy/natctl.service', () => {
  it('runs natctl watch with restart and the hardening operations.md promises', async () => {
    const unit = parseUnit(await read('deploy/natctl.service'));
    const exec = unit.get('ExecStart')?.[0] ?? '';
    const args = exec.split(/\s+/);
    expect(args.slice(0, 3)).toEqual(['/usr/bin/env', 'natctl', 'watch']);
    expect(unit.get('Type')).toEqual(['simple']);
    expect(unit.get('Restart')).toEqual(['always']);
    expect(unit.get('CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN CAP_NET_RAW']);
    expect(unit.get('ProtectSystem')).toEqual(['strict']);
    expect(unit.get('NoNewPrivileges')).toEqual(['yes']);
    const stateDir = flagValue(args, '--state-dir');
    expect(stateDir).toBe('/var/lib/natctl');
    expect(unit.get('ReadWritePaths')).toEqual([stateDir]);
    expect(unit.get('StateDirectory')).toEqual(['natctl']); // = /var/lib/natctl
    expect(flagValue(args, '-f')).toBe('/etc/natctl/natctl.d');
    expect(flagValue(args, '--listen')).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(unit.get('ExecReload')?.[0]).toContain('-HUP $MAINPID');
    const known = await watchFlags();
    for (const flag of args.filter((a) => a.startsWith('-'))) expect(known, flag).toContain(flag);
    // The one-shot unit never runs next to the agent.
    expect(parseUnit(await read('deploy/natctl-apply.service')).get('Conflicts')).toEqual(['natctl.service']);
  });
});

describe('deploy/kubernetes/natctl.yaml', () => {
  const load = async (): Promise<Manifest[]> => parseAllDocuments(await read('deploy/kubernetes/natctl.yaml')).map((d) => d.toJS() as Manifest);

  it('a DaemonSet on the host network with NET_ADMIN only, probes on the --listen port, mounts at -f and --state-dir', async () => {
    const manifests = await load();
    const daemonSet = manifests.find((m) => m.kind === 'DaemonSet');
    const configMap = manifests.find((m) => m.kind === 'ConfigMap');
    expect(daemonSet && configMap).toBeTruthy();
    const pod = daemonSet!.spec!.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.containers).toHaveLength(1);
    const container = pod.containers[0]!;
    expect(container.securityContext.capabilities.add.sort()).toEqual(['NET_ADMIN', 'NET_RAW']);
    expect(container.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(container.securityContext.privileged).toBe(false);

    const args = container.args;
    expect(args[0]).toBe('watch');
    const known = await watchFlags();
    for (const flag of args.filter((a) => a.startsWith('-'))) expect(known, flag).toContain(flag);

    // --listen's port is the named metrics port, and both probes hit /healthz there.
    const listen = flagValue(args, '--listen')!;
    const listenPort = Number(listen.split(':').pop());
    const metrics = container.ports.find((p) => p.name === 'metrics');
    expect(metrics?.containerPort).toBe(listenPort);
    for (const probe of [container.livenessProbe, container.readinessProbe]) {
      expect(probe?.httpGet.path).toBe('/healthz');
      const port = probe?.httpGet.port;
      expect(typeof port === 'string' ? container.ports.find((p) => p.name === port)?.containerPort : port).toBe(listenPort);
    }
    // $(POD_IP) in --listen is expanded by the kubelet from the env var it names.
    const variable = /^\$\((\w+)\):/.exec(listen)?.[1];
    if (variable) expect(container.env?.map((e) => e.name)).toContain(variable);

    const mountOf = (path: string | undefined) => container.volumeMounts.find((m) => m.mountPath === path);
    const volumeOf = (name: string | undefined) => pod.volumes.find((v) => v.name === name);
    const fragments = mountOf(flagValue(args, '-f'));
    expect(fragments?.readOnly).toBe(true);
    expect(volumeOf(fragments?.name)?.configMap?.name).toBe(configMap!.metadata.name);
    const state = mountOf(flagValue(args, '--state-dir'));
    expect(state?.readOnly).not.toBe(true);
    expect(volumeOf(state?.name)?.hostPath?.path).toBe(flagValue(args, '--state-dir'));
  });

  it("the ConfigMap's example fragments are a valid drop-in directory", async () => {
    const configMap = (await load()).find((m) => m.kind === 'ConfigMap')!;
    const dir = await mkdtemp(join(tmpdir(), 'natctl-deploy-'));
    try {
      for (const [name, text] of Object.entries(configMap.data ?? {})) await writeFile(join(dir, name), text);
      const config = await loadConfigDirectory(dir);
      expect(config.mappings?.length).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('docs/operations.md', () => {
  it('quotes deploy/natctl.service and the DaemonSet exactly (deploy/ is the one source)', async () => {
    const docs = await read('docs/operations.md');
    const blocks = [...docs.matchAll(/```(?:ini|yaml)\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks).toContain(await read('deploy/natctl.service'));
    expect(blocks).toContain(await read('deploy/kubernetes/natctl.yaml'));
  });
});
