// Doctor checks that matter on an iptables-legacy host (issue 9, item 8). They only read:
// tool versions, kernel extensions, the FORWARD chains of iptables-legacy and iptables-nft,
// iptables-nft DNAT rules that would race natctl's, and the xtables lock.
import type { CheckResult, CheckStatus } from '../../doctor/checks.js';
import { formatPortRange, rangesOverlap } from '../../config/ports.js';
import type { Model } from '../../model/model.js';
import type { Runner } from '../exec.js';
import { chains } from './render.js';
import { restoreCommand, saveCommand } from './rules.js';

const result = (check: string, status: CheckStatus, message: string, fix?: string): CheckResult => (fix ? { check, status, message, fix } : { check, status, message });

async function run(runner: Runner, command: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const out = await runner.run(command, args).catch((error: unknown) => ({ exitCode: 127, stdout: '', stderr: (error as Error).message }));
  return { ok: out.exitCode === 0, stdout: out.stdout, stderr: out.stderr };
}

async function tools(runner: Runner): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const family of [4, 6] as const) {
    for (const command of [restoreCommand(family), saveCommand(family)]) {
      const version = await run(runner, command, ['--version']);
      if (!version.ok) out.push(result('iptables-legacy', 'fail', `${command} not found or not working`, 'apt-get install iptables (it ships the legacy tools)'));
    }
  }
  if (!out.length) out.push(result('iptables-legacy', 'pass', (await run(runner, restoreCommand(4), ['--version'])).stdout.trim()));
  return out;
}

/** Kernel extensions natctl's rules use: loaded (listed in /proc), loadable (modprobe -n), or missing. */
const extensions: { module: string; kind: 'matches' | 'targets'; name: string }[] = [
  { module: 'xt_addrtype', kind: 'matches', name: 'addrtype' },
  { module: 'xt_conntrack', kind: 'matches', name: 'conntrack' },
  { module: 'xt_statistic', kind: 'matches', name: 'statistic' },
  { module: 'xt_comment', kind: 'matches', name: 'comment' },
  { module: 'xt_nat', kind: 'targets', name: 'DNAT' },
  { module: 'xt_MASQUERADE', kind: 'targets', name: 'MASQUERADE' },
];

async function modules(runner: Runner): Promise<CheckResult[]> {
  const listed = async (kind: string): Promise<string[]> => (await run(runner, 'cat', [`/proc/net/ip_tables_${kind}`])).stdout.split('\n');
  const loaded = { matches: await listed('matches'), targets: await listed('targets') };
  const missing: string[] = [];
  const loadable: string[] = [];
  for (const ext of extensions) {
    if (loaded[ext.kind].includes(ext.name)) continue;
    if ((await run(runner, 'modprobe', ['-n', '-q', ext.module])).ok) loadable.push(ext.module);
    else missing.push(ext.module);
  }
  if (missing.length) return [result('iptables extensions', 'fail', `the kernel lacks ${missing.join(', ')}`, `modprobe ${missing.join(' ')} (or use a kernel with them)`)];
  if (loadable.length) return [result('iptables extensions', 'pass', `${loadable.join(', ')} not loaded yet; the kernel loads them on first use`)];
  return [result('iptables extensions', 'pass', 'addrtype, conntrack, statistic, comment, DNAT, MASQUERADE')];
}

function forwardOf(save: string): { policy?: string; rules: string[] } {
  const lines = save.split('\n');
  const start = lines.indexOf('*filter');
  if (start < 0) return { rules: [] };
  const table = lines.slice(start, lines.indexOf('COMMIT', start));
  const policy = /^:FORWARD (\S+)/.exec(table.find((l) => l.startsWith(':FORWARD ')) ?? '')?.[1];
  const rules = table.filter((l) => l.startsWith('-A FORWARD '));
  return policy === undefined ? { rules } : { policy, rules };
}

async function forwardChains(runner: Runner): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const family of [4, 6] as const) {
    const save = await run(runner, saveCommand(family), ['-t', 'filter']);
    if (!save.ok) continue;
    const { policy, rules } = forwardOf(save.stdout);
    const ours = rules.findIndex((r) => r === `-A FORWARD -j ${chains.forward}`);
    const where = `iptables-legacy IPv${family} FORWARD`;
    if (ours > 0) out.push(result('forward order', 'warn', `${where}: ${ours} rule(s) come before natctl's jump; their drops apply to published ports first`, 'natctl apply moves its jump back to the top'));
    else if (ours < 0) {
      const drops = rules.filter((r) => / -j (DROP|REJECT)\b/.test(r));
      if (policy === 'DROP' || drops.length) out.push(result('forward policy', 'info', `${where} has ${policy === 'DROP' ? 'policy DROP' : ''}${policy === 'DROP' && drops.length ? ' and ' : ''}${drops.length ? `${drops.length} DROP/REJECT rule(s)` : ''}; natctl's jump goes first, so its traffic is accepted before them`));
    }
  }
  // iptables-nft's chains run at the same hooks: a drop there drops what natctl accepted in iptables-legacy.
  const nft = await run(runner, 'iptables-nft-save', ['-t', 'filter']);
  if (nft.ok) {
    const { policy, rules } = forwardOf(nft.stdout);
    const drops = rules.filter((r) => / -j (DROP|REJECT)\b/.test(r));
    if (policy === 'DROP' || drops.length) {
      out.push(result('iptables-nft', 'warn', `iptables-nft FORWARD has ${policy === 'DROP' ? 'policy DROP' : `${drops.length} DROP/REJECT rule(s)`}: it runs besides iptables-legacy and drops what natctl accepts`, 'iptables-nft -I FORWARD -m conntrack --ctstate DNAT,RELATED,ESTABLISHED -j ACCEPT (or manage that firewall with iptables-legacy)'));
    }
  }
  return out;
}

/** iptables-nft DNAT rules on ports natctl maps: the first nat chain to translate a connection wins. */
async function shadowing(runner: Runner, model: Model | undefined): Promise<CheckResult[]> {
  if (!model) return [];
  const nft = await run(runner, 'iptables-nft-save', ['-t', 'nat']);
  if (!nft.ok) return [];
  const out: CheckResult[] = [];
  for (const line of nft.stdout.split('\n')) {
    const port = /--dport (\d+)(?::(\d+))?/.exec(line);
    if (!line.includes('-j DNAT') || !port?.[1]) continue;
    const range = { from: Number(port[1]), to: Number(port[2] ?? port[1]) };
    const clash = model.mappings.find((m) => rangesOverlap(m.hostPorts, range) && line.includes(`-p ${m.proto}`));
    if (clash) out.push(result('iptables-nft', 'warn', `iptables-nft DNATs port ${formatPortRange(range)}, which mapping ${clash.name} publishes; whichever nat chain runs first takes the connection`, 'remove one of the two'));
  }
  return out;
}

async function xtablesLock(runner: Runner): Promise<CheckResult> {
  // Taking and releasing the lock at once says whether somebody holds it now.
  const probe = await run(runner, 'flock', ['-n', '/run/xtables.lock', 'true']);
  if (probe.ok) return result('xtables lock', 'pass', '/run/xtables.lock is free');
  if (/No such file|not found|cannot open/i.test(probe.stderr)) return result('xtables lock', 'info', `not checked: ${probe.stderr.trim() || 'flock unavailable'}`);
  return result('xtables lock', 'warn', '/run/xtables.lock is held by another process; natctl waits up to 10 s for it per restore', 'find the holder: fuser -v /run/xtables.lock');
}

export async function iptablesDoctor(runner: Runner, model?: Model): Promise<CheckResult[]> {
  return [...(await tools(runner)), ...(await modules(runner)), ...(await forwardChains(runner)), ...(await shadowing(runner, model)), await xtablesLock(runner)];
}
