// The limit the bench compares natctl with: the same mappings as one map-based ruleset, the
// least the kernel path needs to DNAT them. Written in nft's text syntax because nft 1.0.6
// JSON cannot declare a map whose data is a concatenation (docs/ruleset.md); one hash map
// keyed `meta l4proto . th dport`, one lookup per new connection whatever N is. The data
// plane checks it really DNATs (conntrack shows the translated flow) before its numbers count.
import { benchMappings } from './configs.js';

export const referenceTable = 'natctl_bench_ref';

export function referenceRuleset(count: number, withExtra = false): string {
  const elements = benchMappings(count, withExtra).map((m) => `tcp . ${m.hostPort} : ${m.address} . ${m.port}`);
  return [
    `table inet ${referenceTable} {`,
    '  map dnat4 {',
    '    type inet_proto . inet_service : ipv4_addr . inet_service',
    `    elements = { ${elements.join(',\n      ')} }`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    fib daddr type local dnat ip to meta l4proto . th dport map @dnat4',
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    fib daddr type local dnat ip to meta l4proto . th dport map @dnat4',
    '  }',
    '}',
    '',
  ].join('\n');
}
