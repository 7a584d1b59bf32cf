// The iptables-legacy render without a kernel: what each behaviour compiles to, that the
// port-bucketed dispatch finds every mapping within tens of rules, and that nothing in a
// config can smuggle a newline, quote or option into restore input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderIptablesRules, renderText, tableText } from '../../src/backends/iptables/render.js';
import type { TableRules } from '../../src/backends/iptables/rules.js';
import { parseConfigObject } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';
import { renderIptables } from '../../src/index.js';
import { validConfig } from '../support/arbitraries.js';

const render = (config: unknown): TableRules[] => renderIptablesRules(buildModel(parseConfigObject(config))).tables;
const table = (tables: TableRules[], family: 4 | 6, name: 'nat' | 'filter'): TableRules => tables.find((t) => t.family === family && t.table === name)!;

/** iptables-restore's tokenizer: whitespace separates, double quotes group, backslash escapes. */
function tokens(line: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  let started = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      started = true;
    } else if (c === '"') {
      quoted = !quoted;
      started = true;
    } else if (/\s/.test(c) && !quoted) {
      if (started) out.push(current);
      current = '';
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (started) out.push(current);
  return out;
}

interface Packet {
  proto: string;
  port: number;
  daddr: string;
}

const parsed = new WeakMap<TableRules, Map<string, string[][]>>();
function chainsOf(rules: TableRules): Map<string, string[][]> {
  let byChain = parsed.get(rules);
  if (!byChain) {
    byChain = new Map();
    for (const line of rules.rules) {
      const argv = tokens(line);
      const list = byChain.get(argv[1]!) ?? [];
      list.push(argv.slice(2));
      byChain.set(argv[1]!, list);
    }
    parsed.set(rules, byChain);
  }
  return byChain;
}

/** Walks a packet through natctl's nat chains from NATCTL-PREROUTING; returns the DNAT it gets and how many rules it passed. */
function walk(rules: TableRules, packet: Packet): { dnat?: string; visited: number } {
  const byChain = chainsOf(rules);
  let visited = 0;
  const matches = (argv: string[]): boolean => {
    for (let i = 0; i < argv.length; i++) {
      const negate = argv[i - 1] === '!';
      let ok = true;
      if (argv[i] === '-p') ok = argv[i + 1] === packet.proto;
      else if (argv[i] === '--dport') {
        const [from, to = from] = argv[i + 1]!.split(':').map(Number);
        ok = packet.port >= from! && packet.port <= to!;
      } else if (argv[i] === '-d') {
        const [net, bits] = argv[i + 1]!.split('/');
        ok = bits === '8' ? packet.daddr.startsWith(`${net!.split('.')[0]}.`) : packet.daddr === net;
      } else continue;
      if (ok === negate) return false;
    }
    return true;
  };
  const run = (chain: string): string | 'return' | undefined => {
    for (const argv of byChain.get(chain) ?? []) {
      visited++;
      if (!matches(argv)) continue;
      const target = argv[argv.indexOf('-j') + 1]!;
      if (target === 'DNAT') return argv[argv.indexOf('--to-destination') + 1];
      if (target === 'RETURN') return 'return';
      const inner = run(target);
      if (inner !== undefined && inner !== 'return') return inner;
    }
    return undefined;
  };
  const dnat = run('NATCTL-PREROUTING');
  return dnat === undefined || dnat === 'return' ? { visited } : { dnat, visited };
}

describe('iptables-legacy render', () => {
  const config = {
    version: 1,
    networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }],
    mappings: [
      { name: 'web', hostPort: 8080, target: '198.18.0.2:80' },
      { name: 'same', hostPort: '31000-31002', target: '198.18.0.2' },
      { name: 'shifted', proto: 'udp', hostPort: '32000-32002', target: '198.18.0.2:31000-31002' },
      { name: 'lb', proto: 'sctp', hostPort: 9000, targets: ['198.18.0.2:80', '198.18.0.3:80', '198.18.0.4:80'] },
      { name: 'web6', hostIp: 'fd00:18::1', hostPort: 8080, target: '[fd00:18::2]:80', allow: ['fd00:19::/64'] },
      { publish: '127.0.0.1:6379:6379', target: '198.18.0.3', network: 'lab0' },
    ],
    snat: [{ source: '198.18.0.3/32', outInterface: 'up0', to: '198.19.0.5-198.19.0.7' }],
    block: [{ targetPort: 80, except: ['198.19.0.2/32', 'fd00:19::2'] }],
  };
  const tables = render(config);

  it('renders nat, filter and (for the guard) mangle for IPv4 and IPv6, in restore syntax, with the jumps natctl adds', () => {
    expect(tables.map((t) => `${t.family} ${t.table}`)).toEqual(['4 nat', '4 filter', '4 mangle', '6 nat', '6 filter', '6 mangle']);
    const text = renderIptables(config);
    expect(text.match(/^\*\w+$/gm)).toEqual(['*nat', '*filter', '*mangle', '*nat', '*filter', '*mangle']);
    expect(text.match(/^COMMIT$/gm)).toHaveLength(6);
    expect(text).toContain('-I PREROUTING 1 -j NATCTL-GUARD');
    expect(text).toContain('-I PREROUTING 1 -m addrtype --dst-type LOCAL -j NATCTL-PREROUTING');
    expect(text).toContain('-I OUTPUT 1 -m addrtype --dst-type LOCAL -j NATCTL-OUTPUT');
    expect(text).toContain('-I FORWARD 1 -j NATCTL-FORWARD');
    expect(text).toContain('-I POSTROUTING 1 -j NATCTL-POSTROUTING');
    expect(renderText({ tables })).toBe(text);
    for (const t of tables) expect(text).toContain(tableText(t));
  });

  it("keeps Docker's positional meaning of port ranges: the same range keeps the port, a shifted one maps through /BASE", () => {
    const nat = table(tables, 4, 'nat').rules.join('\n');
    expect(nat).toContain('--dport 31000:31002 -m comment --comment "natctl mapping same tcp 0.0.0.0:31000-31002" -j DNAT --to-destination 198.18.0.2\n');
    expect(nat).toContain('-p udp -m udp --dport 32000:32002 -m comment --comment "natctl mapping shifted udp 0.0.0.0:32000-32002" -j DNAT --to-destination 198.18.0.2:31000-31002/32000');
    expect(walk(table(tables, 4, 'nat'), { proto: 'udp', port: 32001, daddr: '198.19.0.1' }).dnat).toBe('198.18.0.2:31000-31002/32000');
  });

  it('spreads several targets round-robin with statistic nth, one rule per target', () => {
    const lb = table(tables, 4, 'nat').rules.filter((r) => r.startsWith('-A NATCTL-LB-3 '));
    expect(lb).toEqual([
      '-A NATCTL-LB-3 -p sctp -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 198.18.0.2:80',
      '-A NATCTL-LB-3 -p sctp -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 198.18.0.3:80',
      '-A NATCTL-LB-3 -p sctp -j DNAT --to-destination 198.18.0.4:80',
    ]);
  });

  it('binds host IPs, skips loopback for wildcard mappings on the output path, and publishes an explicit 127.0.0.1 binding', () => {
    const nat4 = table(tables, 4, 'nat').rules;
    expect(nat4).toContain('-A NATCTL-OUTPUT -d 127.0.0.0/8 -j NATCTL-LOOPBACK');
    expect(nat4.indexOf('-A NATCTL-OUTPUT -d 127.0.0.0/8 -j NATCTL-LOOPBACK')).toBeLessThan(nat4.indexOf('-A NATCTL-OUTPUT -d 127.0.0.0/8 -j RETURN'));
    expect(nat4).toContain('-A NATCTL-POSTROUTING -s 127.0.0.0/8 -o lab0 -j MASQUERADE');
    expect(walk(table(tables, 4, 'nat'), { proto: 'tcp', port: 6379, daddr: '127.0.0.1' }).dnat).toBe('198.18.0.3:6379');
    const nat6 = table(tables, 6, 'nat').rules;
    expect(nat6).toContain('-A NATCTL-OUTPUT -d ::1/128 -j RETURN');
    expect(nat6.join('\n')).toContain('-d fd00:18::1/128 -p tcp -m tcp --dport 8080 -m comment --comment "natctl mapping web6 tcp [fd00:18::1]:8080" -j DNAT --to-destination [fd00:18::2]:80');
  });

  it('puts block rules before any accept, matched on the conntrack entry, with except, and allow-lists on the original source', () => {
    const filter4 = table(tables, 4, 'filter').rules;
    expect(filter4[0]).toBe('-A NATCTL-FORWARD -j NATCTL-BLOCK');
    expect(filter4).toContain('-A NATCTL-BLOCK -p tcp -m conntrack --ctstate DNAT --ctreplsrcport 80 -j NATCTL-BLOCK-0');
    expect(filter4).toContain('-A NATCTL-BLOCK-0 -m conntrack --ctorigsrc 198.19.0.2 -j RETURN');
    const filter6 = table(tables, 6, 'filter').rules;
    expect(filter6).toContain('-A NATCTL-BLOCK-0 -m conntrack --ctorigsrc fd00:19::2 -j RETURN');
    expect(filter6).toContain('-A NATCTL-FWD-TCP -p tcp -m conntrack --ctorigdst fd00:18::1 --ctorigdstport 8080 -m comment --comment "natctl forward web6" -j NATCTL-ALLOW-4');
    expect(filter6).toContain('-A NATCTL-ALLOW-4 -m conntrack --ctorigsrc fd00:19::/64 -j ACCEPT');
    expect(table(tables, 4, 'filter').jumps).toEqual([{ chain: 'FORWARD', spec: '-j NATCTL-FORWARD', first: true }]);
  });

  it('guards in mangle PREROUTING: 127/8 only from lo, no direct routed access in gateway mode nat; no mangle table when nothing is guarded', () => {
    const mangle4 = table(tables, 4, 'mangle');
    expect(mangle4.jumps).toEqual([{ chain: 'PREROUTING', spec: '-j NATCTL-GUARD', first: false }]);
    expect(mangle4.rules).toEqual([
      '-A NATCTL-GUARD -d 127.0.0.0/8 ! -i lo -m comment --comment "natctl loopback only from lo" -j DROP',
      '-A NATCTL-GUARD -d 198.18.0.0/24 ! -i lab0 -m addrtype ! --dst-type LOCAL -m conntrack --ctstate INVALID,NEW,UNTRACKED -j DROP',
    ]);
    expect(table(tables, 6, 'mangle').rules).toEqual(['-A NATCTL-GUARD -d fd00:18::/64 ! -i lab0 -m addrtype ! --dst-type LOCAL -m conntrack --ctstate INVALID,NEW,UNTRACKED -j DROP']);
    const open = render({ ...config, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], gatewayMode: 'nat-unprotected' }], mappings: config.mappings.slice(0, 2) });
    expect(open.map((t) => `${t.family} ${t.table}`)).toEqual(['4 nat', '4 filter', '6 nat', '6 filter']);
  });

  it('routed: direct access to published target ports only, under the allow-list; target-port blocks cover routed connections', () => {
    const routed = render({
      version: 1,
      networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], gatewayMode: 'routed' }],
      mappings: [{ name: 'tls', hostPort: 8443, target: '198.18.0.2:443', allow: ['198.19.0.2/32'] }, { name: 'web', hostPort: 8080, target: '198.18.0.3:80' }],
      block: [{ targetPort: 443 }],
    });
    expect(table(routed, 4, 'mangle').rules).toEqual([
      '-A NATCTL-GUARD -d 198.18.0.0/24 ! -i lab0 -m addrtype ! --dst-type LOCAL -m conntrack --ctstate INVALID,NEW,UNTRACKED -j NATCTL-ROUTED-0',
      '-A NATCTL-ROUTED-0 -s 198.19.0.2/32 -d 198.18.0.2/32 -p tcp -m tcp --dport 443 -j ACCEPT',
      '-A NATCTL-ROUTED-0 -d 198.18.0.3/32 -p tcp -m tcp --dport 80 -j ACCEPT',
      '-A NATCTL-ROUTED-0 -p icmp -j ACCEPT',
      '-A NATCTL-ROUTED-0 -j DROP',
    ]);
    expect(table(routed, 4, 'filter').rules).toContain('-A NATCTL-BLOCK -p tcp -m conntrack --ctorigdst 198.18.0.0/24 --ctreplsrcport 443 -j NATCTL-BLOCK-0');
    expect(table(routed, 4, 'nat').rules.filter((r) => r.includes('MASQUERADE'))).toEqual(['-A NATCTL-POSTROUTING -s 198.18.0.0/24 -o lab0 -m conntrack --ctstate DNAT -j MASQUERADE']);
  });

  it('hairpin: false drops DNATed traffic bridged back into its network; targets in no network get their own masquerade', () => {
    const off = render({ version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], hairpin: false }], mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'out', hostPort: 8081, target: '198.20.0.2:80' }] });
    const filter = table(off, 4, 'filter').rules;
    expect(filter.indexOf('-A NATCTL-FORWARD -i lab0 -o lab0 -m conntrack --ctstate DNAT -j DROP')).toBeGreaterThan(0);
    expect(filter.indexOf('-A NATCTL-FORWARD -i lab0 -o lab0 -m conntrack --ctstate DNAT -j DROP')).toBeLessThan(filter.indexOf('-A NATCTL-FORWARD -p tcp -m conntrack --ctstate DNAT -j NATCTL-FWD-TCP'));
    expect(table(off, 4, 'nat').rules).toContain('-A NATCTL-POSTROUTING -s 198.20.0.2/32 -d 198.20.0.2/32 -m conntrack --ctstate DNAT -j MASQUERADE');
  });

  it('masquerades hairpin and egress per network and SNATs to a range', () => {
    const post = table(tables, 4, 'nat').rules.filter((r) => r.startsWith('-A NATCTL-POSTROUTING'));
    expect(post).toEqual([
      '-A NATCTL-POSTROUTING -s 198.18.0.0/24 -o lab0 -m conntrack --ctstate DNAT -j MASQUERADE',
      '-A NATCTL-POSTROUTING -s 127.0.0.0/8 -o lab0 -j MASQUERADE',
      '-A NATCTL-POSTROUTING -s 198.18.0.3/32 -o up0 -j SNAT --to-source 198.19.0.5-198.19.0.7',
      '-A NATCTL-POSTROUTING -s 198.18.0.0/24 ! -o lab0 -j MASQUERADE',
    ]);
  });

  it('refuses an interface name ending in "+" (an iptables wildcard), naming the field', () => {
    const bad = { version: 1, networks: [{ name: 'br+', subnets: ['198.18.0.0/24'] }], snat: [{ source: '198.18.0.0/24', outInterface: 'up+', masquerade: true }] };
    const error = (() => {
      try {
        render(bad);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.path)).toEqual(['networks[0].name', 'snat[0].outInterface']);
    expect((error as ConfigError).message).toContain('wildcard');
  });

  it('finds each of 10,000 mappings within tens of rules, and every port outside them nowhere', () => {
    const mappings = Array.from({ length: 10_000 }, (_, i) => ({
      name: `m${i}`,
      hostPort: 20_000 + i * 4,
      ...(i % 7 === 0 ? { hostIp: '198.18.1.1' } : {}),
      target: `198.18.0.${2 + (i % 200)}:${80 + (i % 3)}`,
    }));
    const nat = table(render({ version: 1, mappings }), 4, 'nat');
    let worst = 0;
    mappings.forEach((m, i) => {
      const packet = { proto: 'tcp', port: m.hostPort, daddr: '198.18.1.1' };
      const { dnat, visited } = walk(nat, packet);
      expect(dnat).toBe(m.target);
      worst = Math.max(worst, visited);
      if (i % 7 === 0) expect(walk(nat, { ...packet, daddr: '198.19.0.1' }).dnat).toBeUndefined();
      if (i % 10 === 0) expect(walk(nat, { ...packet, port: m.hostPort + 1 }).dnat).toBeUndefined();
    });
    expect(worst).toBeLessThanOrEqual(80);
  });

  it('no network name can smuggle a newline, quote or option into restore input: it only ever fills one value token', () => {
    fc.assert(fc.property(validConfig, (config) => {
      let model;
      try {
        model = buildModel(parseConfigObject(config));
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return;
      }
      const name = config.networks[0]!.name;
      let rendered: TableRules[];
      try {
        rendered = renderIptablesRules(model).tables;
      } catch (error) {
        // Only an iptables wildcard name is refused, and the error names the field.
        expect(name.endsWith('+')).toBe(true);
        expect((error as ConfigError).problems[0]?.path).toBe('networks[0].name');
        return;
      }
      // The same config under a plain name must give the same token streams, token for token.
      const plain = 'natctlplain0';
      const swapped = {
        ...config,
        networks: [{ ...config.networks[0]!, name: plain }],
        mappings: config.mappings.map((m) => ({ ...m, network: plain })),
        snat: config.snat.map((r) => ({ ...r, outInterface: plain })),
      };
      const reference = renderIptablesRules(buildModel(parseConfigObject(swapped))).tables;
      rendered.forEach((t, i) => {
        const lines = tableText(t).split('\n');
        const refLines = tableText(reference[i]!).split('\n');
        expect(lines.length).toBe(refLines.length);
        lines.forEach((line, j) => {
          const ref = tokens(refLines[j]!);
          // Where the plain name stands, the hostile name stands whole; everything else is identical.
          const got = tokens(line).map((tok, k) => (tok === name && ref[k] === plain ? plain : tok));
          expect(got).toEqual(ref);
        });
      });
    }), { numRuns: 300 });
  });
});
