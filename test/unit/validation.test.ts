import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findDuplicateJsonKey } from '../../src/config/json-keys.js';
import { parseConfigObject, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';

const base = { version: 1, networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', 'fd00:18::/64'] }] };

function problems(config: unknown): string {
  try {
    buildModel(parseConfigObject(config));
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error('config was accepted');
}

describe('config validation', () => {
  it('accepts the documented example and fills defaults', () => {
    const model = buildModel(parseConfigObject({ ...base, mappings: [{ hostPort: 8080, target: '198.18.0.2:80' }] }));
    expect(model.mappings[0]).toMatchObject({ name: 'tcp-8080', family: 4, proto: 'tcp', network: 'lab0', targets: [{ addr: '198.18.0.2', ports: { from: 80, to: 80 } }] });
    expect(model.networks[0]).toMatchObject({ hairpin: true, egress: { 4: { kind: 'masquerade' }, 6: { kind: 'masquerade' } } });
  });

  it.each([
    [{ mappings: [{ hostPort: 70000, target: '198.18.0.2' }] }, 'mappings[0].hostPort', '70000'],
    [{ mappings: [{ hostPort: 0, target: '198.18.0.2' }] }, 'mappings[0].hostPort', '0'],
    [{ mappings: [{ hostPort: '10-5', target: '198.18.0.2' }] }, 'mappings[0].hostPort', '"10-5"'],
    [{ mappings: [{ hostPort: 80, target: '198.18.0.300:80' }] }, 'mappings[0].target', '198.18.0.300'],
    [{ mappings: [{ hostPort: 80, target: '198.18.0.2:80', allow: ['198.18.0.1/33'] }] }, 'mappings[0].allow[0]', '198.18.0.1/33'],
    [{ mappings: [{ hostPort: 80, target: '198.18.0.2:80', allow: ['198.18.0.1/24'] }] }, 'mappings[0].allow[0]', 'host bits'],
    [{ mappings: [{ hostPort: '30000-30010', target: '198.18.0.2:80-81' }] }, 'mappings[0].target', 'same length'],
    [{ mappings: [{ hostPort: 80, network: 'nope', target: '198.18.0.2' }] }, 'mappings[0].network', '"nope"'],
    [{ mappings: [{ hostPort: 80, hostIp: 'fd00::1', target: '198.18.0.2' }] }, 'mappings[0].hostIp', 'IPv6 but the target is IPv4'],
    [{ mappings: [{ publish: '[fd00::1]:80:80', target: '198.18.0.2' }] }, 'mappings[0].publish', 'IPv6 but the target is IPv4'],
    [{ mappings: [{ publish: '8080:80', target: '198.18.0.2:81' }] }, 'mappings[0].target', 'publish string already gives'],
    [{ mappings: [{ publish: '8080:80', hostPort: 8080, target: '198.18.0.2' }] }, 'mappings[0].publish', 'cannot be combined'],
    [{ mappings: [{ hostPort: 80, targets: ['198.18.0.2', 'fd00:18::2'] }] }, 'mappings[0].targets[1]', 'one family'],
    [{ mappings: [{ hostPort: 80, proto: 'icmp', target: '198.18.0.2' }] }, 'mappings[0].proto', '"icmp"'],
    [{ mappings: [{ hostPort: 80, target: '198.18.0.2', typo: 1 }] }, 'mappings[0]', '"typo"'],
    [{ mappings: [{ name: 'a b', hostPort: 80, target: '198.18.0.2' }] }, 'mappings[0].name', '"a b"'],
    [{ networks: [{ name: 'this-name-is-too-long', subnets: ['198.18.0.0/24'] }] }, 'networks[0].name', 'this-name-is-too-long'],
    [{ networks: [{ name: 'a/b', subnets: ['198.18.0.0/24'] }] }, 'networks[0].name', '"a/b"'],
    [{ networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], snat: { to: 'fd00::5' } }] }, 'networks[0].snat.to', 'no IPv6 subnet'],
    [{ snat: [{ source: '198.18.0.0/24', to: 'fd00::1' }] }, 'snat[0].to', 'IPv6'],
    [{ snat: [{ source: '198.18.0.0/24' }] }, 'snat[0].to', 'required'],
    [{ block: [{ hostPort: 3306, targetPort: 3306 }] }, 'block[0].hostPort', 'cannot be combined'],
    [{ block: [{ hostPort: 3306, except: ['nope'] }] }, 'block[0].except[0]', '"nope"'],
  ])('rejects %j at %s naming %s', (extra, path, value) => {
    const message = problems({ ...base, ...extra });
    expect(message).toContain(`${path}:`);
    expect(message).toContain(value);
  });

  it.each([
    ['ééééééééé', '18 bytes'],
    ['lab*', '"*"'],
    ['@dnat4', '"@"'],
    ['lab$x', '"$"'],
    ['a\\b', '"\\\\"'],
    ["a'b", `"'"`],
    ['a"b', '"\\""'],
    ['a b', 'whitespace'],
    ['a\tb', 'whitespace'],
    ['à', 'whitespace'],
    ['a\u00a0b', 'whitespace'],
    ['eth%d', '"%"'],
    ['a:b', '":"'],
    ['.', '"." or ".."'],
    ['..', '"." or ".."'],
    ['', 'empty'],
    ['a\u0001b', 'control character'],
    ['a\ud800', 'unpaired surrogate'],
    ['tcp', 'protocol constant'],
    ['udp', 'protocol constant'],
  ])('refuses the interface name %j (%s), in networks, snat and outInterface', (name, reason) => {
    for (const [extra, path] of [
      [{ networks: [{ name, subnets: ['198.18.0.0/24'] }] }, 'networks[0].name'],
      [{ networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'], snat: { to: '198.19.0.5', outInterface: name } }] }, 'networks[0].snat.outInterface'],
      [{ snat: [{ source: '198.18.0.0/24', outInterface: name, masquerade: true }] }, 'snat[0].outInterface'],
    ] as const) {
      const message = problems({ ...base, ...extra });
      expect(message).toContain(`${path}: `);
      expect(message).toContain(reason);
    }
  });

  it.each(['drop', 'counter', 'accept', 'ip', 'ééééééé', 'br-0.10', 'x;{}#', '-x'])('accepts the interface name %j', (name) => {
    expect(() => buildModel(parseConfigObject({ version: 1, networks: [{ name, subnets: ['198.18.0.0/24'] }] }))).not.toThrow();
  });

  it.each([
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', '0.0.0.0/8'],
    ['255.255.255.255', 'broadcast'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250:1900', 'multicast'],
    ['::', 'unspecified'],
    ['[::]:80', 'unspecified'],
    ['::ffff:198.18.0.2', 'IPv4-mapped'],
    ['[::ffff:c612:2]:80', 'IPv4-mapped'],
    ['ff02::1', 'multicast'],
    ['fe80::1', 'link-local'],
    ['[fe80::1]:80', 'link-local'],
  ])('refuses the target %s (%s)', (target, reason) => {
    const message = problems({ ...base, mappings: [{ hostPort: 80, target }] });
    expect(message).toContain('mappings[0].target: ');
    expect(message).toContain(reason);
    expect(problems({ ...base, mappings: [{ hostPort: 80, targets: [target] }] })).toContain('mappings[0].targets[0]: ');
  });

  it.each([
    [{ hostIp: '::ffff:198.18.1.1', hostPort: 80, target: '198.18.0.2' }, 'mappings[0].hostIp', 'IPv4-mapped'],
    [{ hostIp: '255.255.255.255', hostPort: 80, target: '198.18.0.2' }, 'mappings[0].hostIp', 'broadcast'],
    [{ hostIp: '224.0.0.1', hostPort: 80, target: '198.18.0.2' }, 'mappings[0].hostIp', 'multicast'],
    [{ hostIp: '0.1.2.3', hostPort: 80, target: '198.18.0.2' }, 'mappings[0].hostIp', '0.0.0.0/8'],
    [{ hostIp: 'ff02::1', hostPort: 80, target: '[fd00:18::2]:80' }, 'mappings[0].hostIp', 'multicast'],
    [{ publish: '[::ffff:198.18.1.1]:80:80', target: '198.18.0.2' }, 'mappings[0].publish', 'IPv4-mapped'],
    [{ publish: '239.1.1.1:80:80', target: '198.18.0.2' }, 'mappings[0].publish', 'multicast'],
  ])('refuses the host IP of %j', (mapping, path, reason) => {
    const message = problems({ ...base, mappings: [mapping] });
    expect(message).toContain(`${path}: `);
    expect(message).toContain(reason);
  });

  it('keeps 0.0.0.0 and :: valid as host IPs (every local address of the family)', () => {
    expect(() => parseConfigObject({ ...base, mappings: [{ hostIp: '0.0.0.0', hostPort: 80, target: '198.18.0.2' }, { hostIp: '::', hostPort: 80, target: '[fd00:18::2]:80' }] })).not.toThrow();
    expect(() => parseConfigObject({ ...base, mappings: [{ publish: '0.0.0.0:80:80', target: '198.18.0.2' }, { publish: '[::]:81:80', target: 'fd00:18::2' }] })).not.toThrow();
  });

  it.each(['0.0.0.0', '224.0.0.1-224.0.0.9', '198.18.0.5-255.255.255.255', '::ffff:198.19.0.5'])('refuses the SNAT source %s', (to) => {
    expect(problems({ ...base, snat: [{ source: '198.18.0.0/24', to }] })).toContain('snat[0].to: ');
  });

  it('refuses duplicate keys in JSON configs, as in YAML ones, naming where', () => {
    expect(() => parseConfigText('version: 1\nversion: 1\n')).toThrow(/unique/);
    expect(() => parseConfigText('{"version": 1, "version": 1}')).toThrow(/duplicate key "version"/);
    const nested = '{"version": 1, "mappings": [{"hostPort": 80, "target": "198.18.0.2"}, {"hostPort": 81, "target": "198.18.0.3", "hostPort": 8081}]}';
    expect(() => parseConfigText(nested)).toThrow(/duplicate key "hostPort" in mappings\[1\]/);
    expect(() => parseConfigText('{"version": 1, "networks": [{"name": "a\\"b", "subnets": [], "\\u006eame": "x"}]}')).toThrow(/duplicate key "name" in networks\[0\]/);
    // Equal keys in different objects, and key-like strings in values, are fine.
    expect(parseConfigText('{"version": 1, "mappings": [{"name": "hostPort", "hostPort": 80, "target": "198.18.0.2"}, {"hostPort": 81, "target": "198.18.0.3"}]}').mappings).toHaveLength(2);
  });

  it('the duplicate-key scan never fires on JSON without duplicates, and finds an injected one where it is', () => {
    fc.assert(fc.property(fc.jsonValue(), fc.string({ maxLength: 8 }), (value, key) => {
      const json = JSON.stringify(value);
      expect(findDuplicateJsonKey(json)).toBeUndefined();
      const k = JSON.stringify(key);
      expect(findDuplicateJsonKey(`{${k}:${json},${k}:0}`)).toEqual({ path: '', key });
      expect(findDuplicateJsonKey(`[${json},{"x":{${k}:${json},${k}:${json}}}]`)).toEqual({ path: '[1].x', key });
    }), { numRuns: 300 });
  });

  it('rejects two mappings that claim the same host address, protocol and port', () => {
    const message = problems({ ...base, mappings: [{ hostPort: 8080, target: '198.18.0.2' }, { hostIp: '198.18.1.1', hostPort: '8000-8090', target: '198.18.0.3:8000-8090' }] });
    expect(message).toContain('mappings[1]:');
    expect(message).toContain('8080');
  });

  it('allows the same port on two families, two protocols or two host IPs', () => {
    const model = buildModel(parseConfigObject({ ...base, mappings: [
      { hostPort: 8080, target: '198.18.0.2' },
      { hostPort: 8080, target: '[fd00:18::2]:8080' },
      { hostPort: 8080, proto: 'udp', target: '198.18.0.2' },
    ] }));
    expect(model.mappings.map((m) => m.name)).toEqual(['tcp-8080', 'tcp6-8080', 'udp-8080']);
    expect(() => buildModel(parseConfigObject({ ...base, mappings: [
      { hostIp: '198.18.1.1', hostPort: 80, target: '198.18.0.2' },
      { hostIp: '198.18.1.2', hostPort: 80, target: '198.18.0.3' },
    ] }))).not.toThrow();
  });

  it('rejects duplicate names, explicit or derived', () => {
    expect(problems({ ...base, mappings: [{ name: 'web', hostPort: 1, target: '198.18.0.2' }, { name: 'web', hostPort: 2, target: '198.18.0.2' }] })).toContain('mappings[1].name: mapping name "web" is already used');
    expect(problems({ ...base, networks: [...base.networks, { name: 'lab0', subnets: ['198.18.1.0/24'] }] })).toContain('networks[1].name');
  });

  it('reports every problem at once', () => {
    const error = (() => {
      try {
        buildModel(parseConfigObject({ ...base, mappings: [{ hostPort: 1, target: 'x' }, { hostPort: 2, target: 'y' }] }));
      } catch (e) {
        return e as ConfigError;
      }
      return undefined;
    })();
    expect(error?.problems.map((p) => p.path)).toEqual(['mappings[0].target', 'mappings[1].target']);
  });

  it('gives clear errors for broken, binary-looking and deeply nested documents', () => {
    expect(() => parseConfigText('version: 1\nmappings: [\n')).toThrow(/not valid YAML or JSON/);
    expect(() => parseConfigText('[1, 2]')).toThrow(/must be a mapping/);
    expect(() => parseConfigText(`${'['.repeat(100)}${']'.repeat(100)}`)).toThrow(/must be a mapping|nested/);
    expect(() => parseConfigText(`{"version": 1, "x": ${'{"a":'.repeat(50)}1${'}'.repeat(50)}}`)).toThrow(/nested deeper/);
    expect(() => parseConfigText('version: 2')).toThrow(/version: must be 1/);
  });
});
