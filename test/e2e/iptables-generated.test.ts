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
});
