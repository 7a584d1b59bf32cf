// Generated configs (test/support/arbitraries.ts, hostile interface names included) against
// the real iptables-legacy in a namespace of their own: every render passes
// `iptables-legacy-restore --test`, loads, reads back exactly as rendered (verify finds
// nothing), and flushes to nothing.
import { execa } from 'execa';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { createRunner } from '../../src/backends/exec.js';
import { parseConfigObject } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';
import { validConfig } from '../support/arbitraries.js';
import { e2eEnabled } from '../helpers/topology.js';

const enabled = e2eEnabled();

describe.runIf(enabled)('generated configs on iptables-legacy', () => {
  const netns = `nc-iptgen-${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  let backend: IptablesBackend;

  beforeAll(async () => {
    await execa('ip', ['netns', 'add', netns]);
    backend = new IptablesBackend({ runner: createRunner(netns) });
  });
  afterAll(async () => {
    await execa('ip', ['netns', 'del', netns], { reject: false });
  });

  it('every generated config checks, loads, verifies and flushes', async () => {
    await fc.assert(fc.asyncProperty(validConfig, async (config) => {
      let ruleset;
      try {
        ruleset = backend.render(buildModel(parseConfigObject(config)));
      } catch (error) {
        // An interface name ending in "+" is an iptables wildcard: refused, naming the field.
        expect(error).toBeInstanceOf(ConfigError);
        expect(config.networks[0]!.name.endsWith('+')).toBe(true);
        return;
      }
      await backend.check(ruleset);
      await backend.load(ruleset);
      const live = await backend.read();
      expect(backend.verify(ruleset, live)).toEqual([]);
      await backend.flush();
      expect(await backend.read()).toBeNull();
    }), { numRuns: 25 });
  });

  it('addresses iptables prints its own way (prefix 0, IPv4-mapped prefixes, IPv4-compatible IPv6) load and verify too', async () => {
    const config = {
      version: 1,
      networks: [{ name: 'lab0', subnets: ['198.18.0.0/24', '::/0']}, { name: 'lab1', subnets: ['0.0.0.0/0', '::ffff:0:0/96'] }],
      mappings: [
        { name: 'a', hostPort: 80, target: '198.18.0.2', allow: ['0.0.0.0/0'] },
        { name: 'b', hostIp: '::1.2.3.4', hostPort: 81, target: '[::198.18.0.3]:80', allow: ['::/0', '::ffff:0:0/96', '::1.2.3.4'] },
        { name: 'c', hostIp: '::1.2.3.5', hostPort: 82, targets: ['[::198.18.0.2]:80', '[::2]:80'] },
      ],
      snat: [{ source: '0.0.0.0/0', destination: '0.0.0.0/0', masquerade: true }, { source: '::/0', to: '::1' }, { source: '::ffff:0:0/96', to: '::1.1.1.1' }],
      block: [{ hostPort: 1, except: ['0.0.0.0/0', '::/0', '::ffff:1.2.3.4'] }],
    };
    const ruleset = backend.render(buildModel(parseConfigObject(config)));
    await backend.load(ruleset);
    expect(backend.verify(ruleset, await backend.read())).toEqual([]);
    await backend.flush();
    expect(await backend.read()).toBeNull();
  });
});
