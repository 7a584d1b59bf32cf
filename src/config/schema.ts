// The one zod schema for natctl's config file (DESIGN §3). It checks shapes and single
// values; cross-field meaning (conflicts, unknown networks, families) is checked when the
// model is built (model/build.ts), where the whole config is in view.
import { z } from 'zod';
import { parseAddrRange, parseCidr, ipFamily } from './addr.js';
import { parsePortRange } from './ports.js';

/** What the Linux kernel accepts as an interface name (dev_valid_name): 1-15 bytes, no '/', ':' or space, not '.' or '..'. */
export const interfaceNamePattern = /^(?!\.{1,2}$)[^\s/:\u0000-\u001f\u007f"'\\]{1,15}$/;

const interfaceName = z
  .string()
  .regex(interfaceNamePattern, 'is not an interface name the kernel accepts (1-15 characters, no "/", ":", spaces or quotes, not "." or "..")');

// Mapping names become nft chain names and comments: a tight alphabet keeps them
// injection-proof in every output format.
export const objectNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$/;
const objectName = z.string().regex(objectNamePattern, 'must be 1-48 characters of letters, digits, "_", "." or "-", starting with a letter or digit');

const ipAddress = z.string().refine((v) => ipFamily(v) !== undefined, 'is not an IP address');

const cidr = z.string().refine((v) => typeof parseCidr(v) !== 'string', {
  error: (issue) => {
    const result = parseCidr(String(issue.input));
    return typeof result === 'string' ? result : 'is not a CIDR prefix';
  },
});

const addrOrRange = z.string().refine((v) => typeof parseAddrRange(v) !== 'string', {
  error: (issue) => {
    const result = parseAddrRange(String(issue.input));
    return typeof result === 'string' ? result : 'is not an address range';
  },
});

const port = z.number().int('must be a whole number').min(1, 'is not a port (1-65535)').max(65535, 'is not a port (1-65535)');

const portOrRange = z.union([port, z.string().refine((v) => typeof parsePortRange(v) !== 'string', {
  error: (issue) => {
    const result = parsePortRange(String(issue.input));
    return typeof result === 'string' ? result : 'is not a port range';
  },
})], { error: 'must be a port (1-65535) or a range "start-end"' });

export const protoSchema = z.enum(['tcp', 'udp', 'sctp'], { error: 'must be one of tcp, udp, sctp' });

const snatTarget = z.strictObject({
  to: addrOrRange.describe('address or address range the source is rewritten to, e.g. 198.19.0.5-198.19.0.7'),
  outInterface: interfaceName.optional().describe('only for traffic leaving through this interface'),
});

export const networkSchema = z.strictObject({
  name: interfaceName.describe('interface the workloads sit behind (usually a bridge)'),
  subnets: z.array(cidr).min(1, 'must list at least one subnet').describe('IPv4 and/or IPv6 subnets of the workloads'),
  masquerade: z.boolean().optional().describe('masquerade traffic from the subnets leaving through another interface (default true)'),
  snat: snatTarget.optional().describe('SNAT to a fixed address or range instead of masquerade'),
  hairpin: z.boolean().optional().describe('let workloads reach published ports through the host address (default true); false also turns hairpin mode off on the bridge ports'),
  gatewayMode: z.enum(['nat', 'nat-unprotected', 'routed'], { error: 'must be one of nat, nat-unprotected, routed' }).optional()
    .describe('Docker 28\'s bridge gateway mode: nat (default; only published ports reach the workloads), nat-unprotected (direct routed access open), routed (no egress NAT; direct routed access to published target ports only)'),
});

export const mappingSchema = z.strictObject({
  name: objectName.optional().describe('unique name; derived from proto, host IP and host port when absent'),
  network: interfaceName.optional().describe('name of the declared network the target sits in'),
  publish: z.string().optional().describe('Docker -p syntax: [hostIp:]hostPort[-end]:containerPort[-end][/proto]'),
  proto: protoSchema.optional().describe('tcp (default), udp or sctp'),
  hostIp: ipAddress.optional().describe('only this local address (default: every local address of the target family)'),
  hostPort: portOrRange.optional().describe('host port or range "start-end"'),
  target: z.string().optional().describe('ip, ip:port, [v6]:port or ip:start-end'),
  targets: z.array(z.string()).min(1, 'must list at least one target').optional().describe('several targets; new connections are spread over them'),
  allow: z.array(cidr).optional().describe('only these sources may connect'),
});

export const snatRuleSchema = z.strictObject({
  name: objectName.optional().describe('unique name (default snat-INDEX)'),
  source: cidr.describe('source prefix to rewrite'),
  destination: cidr.optional().describe('only traffic to this prefix'),
  outInterface: interfaceName.optional().describe('only traffic leaving through this interface'),
  to: addrOrRange.optional().describe('address or range to rewrite the source to'),
  masquerade: z.boolean().optional().describe('use the outgoing interface address instead of "to"'),
});

export const blockRuleSchema = z.strictObject({
  name: objectName.optional().describe('unique name (default block-INDEX); shown with its drop counter in status'),
  proto: protoSchema.optional().describe('tcp, udp or sctp (default: all three)'),
  hostPort: portOrRange.optional().describe('published host port (matched on the original destination port)'),
  targetPort: portOrRange.optional().describe('port on the workload (matched after DNAT)'),
  except: z.array(cidr).optional().describe('these sources still pass'),
});

export const configSchema = z.strictObject({
  version: z.literal(1, { error: 'must be 1' }).describe('config format version; always 1'),
  networks: z.array(networkSchema).optional().describe('interfaces workloads sit behind, with their egress NAT and hairpin'),
  mappings: z.array(mappingSchema).optional().describe('published ports: host side -> target(s)'),
  snat: z.array(snatRuleSchema).optional().describe('standalone source NAT rules, evaluated before the networks\' egress'),
  block: z.array(blockRuleSchema).optional().describe('operator rules evaluated before every accept (like DOCKER-USER)'),
});

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type NetworkConfig = z.output<typeof networkSchema>;
export type MappingConfig = z.output<typeof mappingSchema>;
export type SnatRuleConfig = z.output<typeof snatRuleSchema>;
export type BlockRuleConfig = z.output<typeof blockRuleSchema>;
export type Proto = z.output<typeof protoSchema>;

/** The config's JSON Schema (draft 2020-12), for editors and `natctl schema`. */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(configSchema, { target: 'draft-2020-12' }),
    $id: 'https://natctl.dev/schema/config-v1.json',
    title: 'natctl config v1',
  };
}
