// Hostile input: generated configs and abusive files. Invalid input always ends in a
// ConfigError that names the path; valid input always renders; nothing crashes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentToText } from '../../src/backends/nft/text.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { loadConfigFile, parseConfigObject, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';
import { interfaceName, invalidConfig, validConfig } from '../support/arbitraries.js';

function outcome(run: () => unknown): 'ok' | ConfigError {
  try {
    run();
    return 'ok';
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

describe('hostile input', () => {
  it('every generated valid config builds and renders', () => {
    fc.assert(fc.property(validConfig, (config) => {
      const document = renderNftDocument(buildModel(parseConfigObject(config)));
      expect(document.nftables.length).toBeGreaterThan(3);
      documentToText(document);
    }), { numRuns: 300 });
  });

  it('every generated invalid config is refused with an error naming the mapping', () => {
    fc.assert(fc.property(invalidConfig, ({ config, path }) => {
      const result = outcome(() => buildModel(parseConfigObject(config)));
      expect(result).toBeInstanceOf(ConfigError);
      const error = result as ConfigError;
      expect(error.problems.some((p) => p.path.startsWith(path))).toBe(true);
      for (const problem of error.problems) expect(problem.message).not.toMatch(/\n\s+at /);
    }), { numRuns: 300 });
  });

  it('arbitrary JSON documents never crash the parser', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => {
      const result = outcome(() => buildModel(parseConfigObject(value)));
      if (result !== 'ok') expect(result.message.length).toBeGreaterThan(0);
    }), { numRuns: 500 });
  });

  it('arbitrary text never crashes the YAML/JSON reader', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => {
      outcome(() => buildModel(parseConfigText(text)));
    }), { numRuns: 500 });
  });

  it('names that reach the ruleset cannot inject syntax into the text format', () => {
    fc.assert(fc.property(interfaceName, (name) => {
      const config = { version: 1, networks: [{ name, subnets: ['198.18.0.0/24'] }], mappings: [{ hostPort: 80, network: name, target: '198.18.0.2' }] };
      const text = documentToText(renderNftDocument(buildModel(parseConfigObject(config))));
      for (const line of text.split('\n').filter((l) => l.includes(name))) {
        // The name only ever appears inside double quotes or as a bare word of safe characters.
        expect(/^[A-Za-z0-9_.:@/-]+$/.test(name) || line.includes(`"${name}"`)).toBe(true);
      }
    }), { numRuns: 200 });
  });

  describe('abusive files', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'natctl-hostile-'));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    const load = async (name: string, content: string | Buffer): Promise<string> => {
      const file = join(dir, name);
      await writeFile(file, content);
      const error = await loadConfigFile(file).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      return (error as Error).message;
    };

    it('binary', async () => expect(await load('bin', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]))).toMatch(/binary/));
    it('not UTF-8', async () => expect(await load('latin1', Buffer.from('version: 1 # caf\xe9', 'latin1'))).toMatch(/not valid UTF-8/));
    it('huge', async () => expect(await load('huge', 'a'.repeat(17 * 1024 * 1024))).toMatch(/limit/));
    it('deeply nested', async () => expect(await load('deep.yaml', `version: 1\nx: ${'['.repeat(5000)}${']'.repeat(5000)}\n`)).toMatch(/nested|not valid/));
    it('alias bomb', async () => {
      const bomb = ['version: 1', 'a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`)].join('\n');
      expect(await load('bomb.yaml', bomb)).toMatch(/alias|not valid|unknown field/i);
    });
    it('a directory is a drop-in directory: its hostile fragments are refused by name (docs/config.md)', async () => {
      const error = await loadConfigFile(dir).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/bomb\.yaml/);
    });
    it('missing', async () => {
      const error = await loadConfigFile(join(dir, 'nope.yaml')).catch((e: unknown) => e);
      expect((error as Error).message).toMatch(/cannot read .*ENOENT/);
    });
  });
});
