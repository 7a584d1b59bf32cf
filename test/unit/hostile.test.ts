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
import { anyInterfaceName, invalidConfig, validConfig } from '../support/arbitraries.js';

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
    // Sound for every draw: a name is either refused at its field, or the text rendering with it
    // is exactly the rendering with a placeholder name, the placeholder substituted, and the
    // placeholder only ever appears inside double quotes (which the name cannot close).
    const placeholder = 'ifplaceholder0';
    const render = (name: string): string => {
      const config = {
        version: 1,
        networks: [{ name, subnets: ['198.18.0.0/24'], snat: { to: '198.19.0.5', outInterface: name } }],
        mappings: [{ hostPort: 80, network: name, target: '198.18.0.2' }, { hostIp: '127.0.0.1', hostPort: 81, network: name, target: '198.18.0.3' }],
        snat: [{ source: '198.18.0.0/24', outInterface: name, masquerade: true }],
      };
      return documentToText(renderNftDocument(buildModel(parseConfigObject(config))));
    };
    const reference = render(placeholder);
    expect(reference).toContain(`"${placeholder}"`);
    expect(reference.replace(/"[^"\n]*"/g, '""')).not.toContain(placeholder);
    fc.assert(fc.property(anyInterfaceName, (name) => {
      const result = outcome(() => render(name));
      if (result !== 'ok') {
        expect(result.problems.map((p) => p.path)).toContain('networks[0].name');
        return;
      }
      expect(name).not.toMatch(/["\\*@$\s]/);
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(15);
      expect(render(name)).toBe(reference.split(placeholder).join(name));
    }), { numRuns: 300 });
  });

  it('mapping, snat and block names that reach chain names and comments cannot inject syntax either', () => {
    // Same construction: refused at the name's field, or exactly the placeholder's rendering.
    const placeholder = 'objplaceholder0';
    const render = (name: string): string => {
      const config = {
        version: 1,
        networks: [{ name: 'lab0', subnets: ['198.18.0.0/24'] }],
        mappings: [{ name, hostPort: 80, targets: ['198.18.0.2', '198.18.0.3'], allow: ['198.19.0.0/24'] }],
        snat: [{ name, source: '198.18.0.0/24', masquerade: true }],
        block: [{ name, hostPort: 80 }],
      };
      return documentToText(renderNftDocument(buildModel(parseConfigObject(config))));
    };
    const reference = render(placeholder);
    // Outside quotes the placeholder only appears inside chain names with a fixed prefix.
    for (const match of reference.replace(/"[^"\n]*"/g, '""').matchAll(new RegExp(`\\S*${placeholder}\\S*`, 'g'))) {
      expect(match[0]).toMatch(new RegExp(`^[mftb]-${placeholder}(-\\d+)?,?$`));
    }
    fc.assert(fc.property(fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$/), fc.string({ maxLength: 50 }), fc.constantFrom('tcp', 'drop', '1', '1.2.3.4', 'a;b', 'a"b', '@x', 'a b')), (name) => {
      const result = outcome(() => render(name));
      if (result !== 'ok') {
        expect(result.problems.map((p) => p.path)).toEqual(expect.arrayContaining(['mappings[0].name', 'snat[0].name', 'block[0].name']));
        return;
      }
      expect(name).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/);
      expect(render(name)).toBe(reference.split(placeholder).join(name));
    }), { numRuns: 300 });
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
