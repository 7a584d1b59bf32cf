// fast-check generators of natctl configs: valid ones (no conflicts, every field exercised)
// and mutations that make one field invalid.
import fc from 'fast-check';
import { nftJsonConstants } from '../../src/config/names.js';

const octet = fc.integer({ min: 2, max: 254 });
const v4 = fc.tuple(fc.integer({ min: 0, max: 1 }), octet).map(([third, last]) => `198.18.${third}.${last}`);
const v6 = fc.integer({ min: 2, max: 0xfffe }).map((n) => `fd00:18::${n.toString(16)}`);
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/);
/**
 * Interface names natctl accepts, including characters that are special in nft's text syntax
 * outside quotes, nft keywords and multi-byte names (at most 15 bytes).
 */
export const interfaceName = fc
  .oneof(
    fc.stringMatching(/^[a-z][a-z0-9;{}()#!&+=,<>?|~^[\]-]{0,14}$/),
    fc.constantFrom('drop', 'counter', 'accept', 'meta', 'ip', 'ip6', 'dnat', 'jump', 'map', 'table', 'comment', 'é-br', 'ééééééé', 'br.10', '-x', '0'),
  )
  // nft's JSON parser reads these words as protocol constants; natctl refuses them (config/names.ts).
  .filter((s) => Buffer.byteLength(s) <= 15 && !nftJsonConstants.includes(s));

/** Any short string, valid as an interface name or not: natctl must accept it safely or refuse it. */
export const anyInterfaceName = fc.oneof(
  interfaceName,
  fc.constantFrom('tcp', 'udp', 'sctp', 'redirect', 'lab*', '@dnat4', 'ééééééééé', 'à'),
  fc.string({ unit: 'binary', minLength: 0, maxLength: 17 }),
  fc.stringMatching(/^[a-z0-9;{}$()#@!&*+=%:/'"`\\ .-]{0,16}$/),
);

interface MappingShape {
  proto: 'tcp' | 'udp' | 'sctp';
  port: number;
  span: number;
  family: 4 | 6;
  shifted: boolean;
  hostIp: boolean;
  allow: boolean;
  balanced: boolean;
}

const mappingShape: fc.Arbitrary<MappingShape> = fc.record({
  proto: fc.constantFrom('tcp' as const, 'udp' as const, 'sctp' as const),
  port: fc.integer({ min: 1, max: 60000 }),
  span: fc.constantFrom(0, 0, 0, 2, 10),
  family: fc.constantFrom(4 as const, 4 as const, 6 as const),
  shifted: fc.boolean(),
  hostIp: fc.boolean(),
  allow: fc.boolean(),
  balanced: fc.boolean(),
});

export const validConfig = fc
  .record({
    network: interfaceName,
    shapes: fc.uniqueArray(mappingShape, { maxLength: 12, selector: (m) => `${m.proto}/${Math.floor(m.port / 100)}` }),
    targets4: fc.array(v4, { minLength: 2, maxLength: 2 }),
    targets6: fc.array(v6, { minLength: 2, maxLength: 2 }),
    names: fc.uniqueArray(name, { minLength: 12, maxLength: 12 }),
    blockPort: fc.integer({ min: 1, max: 65535 }),
    masquerade: fc.boolean(),
  })
  .map(({ network, shapes, targets4, targets6, names, blockPort, masquerade }) => ({
    version: 1,
    networks: [{ name: network, subnets: ['198.18.0.0/23', 'fd00:18::/64'], masquerade }],
    mappings: shapes.map((m, i) => {
      const port = Math.floor(m.port / 100) * 100 + 1;
      const hostPort = m.span ? `${port}-${port + m.span}` : port;
      const targetPort = m.shifted ? (m.span ? `${port + 50}-${port + 50 + m.span}` : String(port + 50)) : undefined;
      const pool = m.family === 4 ? targets4 : targets6;
      const target = (addr: string): string => (targetPort ? (m.family === 4 ? `${addr}:${targetPort}` : `[${addr}]:${targetPort}`) : addr);
      return {
        name: names[i],
        network,
        proto: m.proto,
        hostPort,
        ...(m.hostIp ? { hostIp: m.family === 4 ? '198.18.1.1' : 'fd00:18::1' } : {}),
        ...(m.balanced ? { targets: pool.map(target) } : { target: target(pool[0]!) }),
        ...(m.allow ? { allow: [m.family === 4 ? '198.19.0.0/24' : 'fd00:19::/64'] } : {}),
      };
    }),
    snat: [{ source: '198.18.0.0/24', outInterface: network, to: '198.19.0.5-198.19.0.7' }],
    block: [{ hostPort: blockPort, except: ['198.19.0.2/32', 'fd00:19::2/128'] }],
  }));

type Json = Record<string, unknown>;

/** One field of a valid config made invalid; `path` is where the error must point. */
export const invalidConfig = fc
  .tuple(
    validConfig.filter((c) => c.mappings.length > 0),
    fc.constantFrom(
      ['hostPort', 70000], ['hostPort', 0], ['hostPort', -1], ['hostPort', 1.5], ['hostPort', '5-1'], ['hostPort', 'http'],
      ['target', '198.18.0.256'], ['target', 'not-an-ip'], ['target', '[fd00::1'], ['target', 42],
      ['proto', 'icmp'], ['hostIp', '1.2.3'], ['allow', ['10.0.0.0/40']], ['allow', 'x'], ['network', 'missing-net'],
      ['name', 'bad name'], ['name', 'x'.repeat(60)], ['surprise', true], ['publish', '80'],
    ) as fc.Arbitrary<[string, unknown]>,
    fc.nat(),
  )
  .map(([config, [field, value], pick]) => {
    const index = pick % config.mappings.length;
    const mapping = { ...(config.mappings[index] as Json), [field]: value };
    if (field === 'target') delete mapping.targets;
    if (field === 'publish') {
      delete mapping.hostPort;
      delete mapping.proto;
      delete mapping.hostIp;
    }
    const mappings = [...config.mappings];
    mappings[index] = mapping as (typeof config.mappings)[number];
    return { config: { ...config, mappings }, path: `mappings[${index}]` };
  });
