// `--backend auto` (issue 9, item 6): nftables when `nft` works and the kernel accepts a
// probe of the features natctl's nft ruleset uses (checked with `nft -c`, nothing is
// committed), otherwise iptables-legacy when its tools work. The reason is kept for
// `--json` output and doctor. For the backend factory to call; it builds no backend itself.
import type { Runner } from './exec.js';
import { withTempFile } from './tempfile.js';

export interface BackendChoice {
  name: 'nft' | 'iptables-legacy';
  reason: string;
}

const T = { family: 'inet', table: 'natctl_probe' };
/** A throwaway table with a nat chain, a fib match, an interval concatenated verdict map, ct status and numgen: what natctl's ruleset needs. */
export const nftProbe = JSON.stringify({ nftables: [
  { add: { table: { family: 'inet', name: 'natctl_probe' } } },
  { add: { chain: { ...T, name: 'm' } } },
  { add: { map: { ...T, name: 'd', type: ['ipv4_addr', 'inet_proto', 'inet_service'], map: 'verdict', flags: ['interval'], elem: [[{ concat: ['198.18.0.1', 'tcp', { range: [1, 2] }] }, { jump: { target: 'm' } }]] } } },
  { add: { chain: { ...T, name: 'pre', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } } },
  { add: { rule: { ...T, chain: 'pre', expr: [{ match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } }, { vmap: { key: { concat: [{ payload: { protocol: 'ip', field: 'daddr' } }, { meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] }, data: '@d' } }] } } },
  { add: { rule: { ...T, chain: 'm', expr: [{ match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } }, { vmap: { key: { numgen: { mode: 'inc', mod: 1, offset: 0 } }, data: { set: [[0, { accept: null }]] } } }] } } },
] });

const firstLine = (text: string): string => text.split('\n').find((l) => l.trim())?.trim() ?? 'no output';

/** How the probe reaches nftables: the nft backend's own transport (the in-process addon when it loads), or a binary to spawn. */
export interface NftProber {
  /** What to call it in reasons: the binary, or the addon. */
  name: string;
  version(): Promise<string>;
  /** Checks a JSON batch without committing it (`nft -c`); throws with the kernel's message when refused. */
  check(batch: string): Promise<void>;
}

function spawnProber(runner: Runner, nft: string, tempDir?: string): NftProber {
  return {
    name: nft,
    version: async () => {
      const out = await runner.run(nft, ['--version']);
      if (out.exitCode !== 0) throw new Error(out.stderr);
      return out.stdout.trim();
    },
    check: async (batch) => {
      const out = await withTempFile('probe.json', batch, (file) => runner.run(nft, ['-c', '-j', '-f', file]), tempDir);
      if (out.exitCode !== 0) throw new Error(out.stderr);
    },
  };
}

export async function chooseBackend(runner: Runner, nft: string | NftProber, tempDir?: string): Promise<BackendChoice> {
  const prober = typeof nft === 'string' ? spawnProber(runner, nft, tempDir) : nft;
  let why: string;
  const version = await prober.version().then((v) => ({ ok: true as const, v }), (error: unknown) => ({ ok: false as const, v: (error as Error).message }));
  if (!version.ok) why = `${prober.name} does not work (${firstLine(version.v)})`;
  else {
    const refused = await prober.check(nftProbe).then(() => undefined, (error: unknown) => (error as Error).message);
    if (refused === undefined) return { name: 'nft', reason: `${version.v} works and the kernel accepts natctl's nftables features` };
    why = `the kernel refuses natctl's nftables features (${firstLine(refused.split('\n').filter((l) => /error/i.test(l)).join('\n') || refused)})`;
  }
  const legacy = await runner.run('iptables-legacy-restore', ['--version']).catch(() => undefined);
  if (legacy?.exitCode === 0) return { name: 'iptables-legacy', reason: `${why}; ${legacy.stdout.trim()} works` };
  // Neither works: nft, whose error then tells the operator what is missing.
  return { name: 'nft', reason: `${why}, and iptables-legacy-restore does not work either` };
}
