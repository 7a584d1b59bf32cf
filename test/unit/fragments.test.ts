// `-f DIR`: a drop-in directory of fragments is one config (docs/config.md). What is a fragment,
// how they merge, and that every problem names its file (both files of a conflict).
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfigDirectory } from '../../src/config/fragments.js';
import { loadConfigFile } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { repoRoot } from '../helpers/topology.js';

const cli = join(repoRoot, 'dist/cli/main.js');
const network = 'version: 1\nnetworks:\n  - name: lab0\n    subnets: [198.18.0.0/24]\n';
const mapping = (name: string, port: number, target = '198.18.0.2:80'): string => `version: 1\nmappings:\n  - name: ${name}\n    network: lab0\n    hostPort: ${port}\n    target: ${target}\n`;

async function problemsOf(dir: string): Promise<string> {
  try {
    await loadConfigDirectory(dir);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('drop-in directory of fragments', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-frag-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('merges every *.yaml, *.yml and *.json in name order, across sections', async () => {
    await writeFile(join(dir, '00-net.yaml'), network);
    await writeFile(join(dir, 'b.yml'), mapping('b', 8082));
    await writeFile(join(dir, 'a.json'), JSON.stringify({ version: 1, mappings: [{ name: 'a', network: 'lab0', hostPort: 8081, target: '198.18.0.3:80' }], block: [{ proto: 'tcp', hostPort: 3306 }] }));
    const config = await loadConfigFile(dir);
    expect(config.networks?.map((n) => n.name)).toEqual(['lab0']);
    expect(config.mappings?.map((m) => m.name)).toEqual(['a', 'b']);
    expect(config.block).toHaveLength(1);
  });

  it('ignores hidden files, temp files of atomic writes, other extensions and subdirectories; follows symlinks', async () => {
    await writeFile(join(dir, 'net.yaml'), network);
    await writeFile(join(dir, '.web.yaml.tmp'), 'not: [valid');
    await writeFile(join(dir, '.hidden.yaml'), 'not: [valid');
    await writeFile(join(dir, 'web.yaml.tmp'), 'not: [valid');
    await writeFile(join(dir, 'web.yaml~'), 'not: [valid');
    await writeFile(join(dir, 'README.md'), '# notes');
    await mkdir(join(dir, 'sub.yaml'));
    // A mounted ConfigMap: keys are symlinks into a hidden ..data directory.
    await mkdir(join(dir, '..2026_data'));
    await writeFile(join(dir, '..2026_data', 'web.yaml'), mapping('web', 8080));
    await symlink('..2026_data', join(dir, '..data'));
    await symlink(join('..data', 'web.yaml'), join(dir, 'web.yaml'));
    const config = await loadConfigDirectory(dir);
    expect(config.mappings?.map((m) => m.name)).toEqual(['web']);
  });

  it('an empty directory is an empty config', async () => {
    expect(await loadConfigDirectory(dir)).toEqual({ version: 1 });
  });

  it('a mapping name used in two fragments names both files', async () => {
    await writeFile(join(dir, 'net.yaml'), network);
    await writeFile(join(dir, 'one.yaml'), mapping('web', 8080));
    await writeFile(join(dir, 'two.yaml'), mapping('web', 8081));
    const message = await problemsOf(dir);
    expect(message).toContain(`${join(dir, 'two.yaml')}: mappings[0].name: mapping name "web" is already used at ${join(dir, 'one.yaml')} mappings[0].name`);
  });

  it('the same host port in two fragments names both files', async () => {
    await writeFile(join(dir, 'net.yaml'), network);
    await writeFile(join(dir, 'one.yaml'), mapping('a', 8080));
    await writeFile(join(dir, 'two.json'), JSON.stringify({ version: 1, mappings: [{ name: 'x', hostPort: 7000, target: '198.18.0.3:80' }, { name: 'b', hostPort: 8080, target: '198.18.0.3:80' }] }));
    const message = await problemsOf(dir);
    expect(message).toContain(join(dir, 'one.yaml'));
    expect(message).toContain(`${join(dir, 'two.json')}: mappings[1]: claims 0.0.0.0 tcp port 8080, which ${join(dir, 'one.yaml')} mappings[0] ("a"`);
  });

  it('the same network in two fragments names both files', async () => {
    await writeFile(join(dir, 'a.yaml'), network);
    await writeFile(join(dir, 'b.yaml'), network);
    expect(await problemsOf(dir)).toContain(`${join(dir, 'b.yaml')}: networks[0].name: network name "lab0" is already used at ${join(dir, 'a.yaml')} networks[0].name`);
  });

  it('a broken fragment is named, with the field; version: 1 is required in every fragment', async () => {
    await writeFile(join(dir, 'net.yaml'), network);
    await writeFile(join(dir, 'bad.yaml'), mapping('bad', 70000));
    await writeFile(join(dir, 'noversion.yaml'), 'mappings: [{name: nv, hostPort: 9000, target: 198.18.0.2:80}]\n');
    await writeFile(join(dir, 'garbage.json'), '{"version": 1, ');
    const message = await problemsOf(dir);
    expect(message).toContain(`${join(dir, 'bad.yaml')}: mappings[0].hostPort`);
    expect(message).toContain('70000');
    expect(message).toContain(`${join(dir, 'noversion.yaml')}: version: must be 1 (is missing)`);
    expect(message).toContain(`${join(dir, 'garbage.json')} is not valid YAML or JSON`);
  });

  it('a mapping may use a network declared in another fragment; an unknown one names the file', async () => {
    await writeFile(join(dir, 'web.yaml'), mapping('web', 8080));
    expect(await problemsOf(dir)).toMatch(new RegExp(`^${join(dir, 'web.yaml')}: mappings\\[0\\]\\.network`, 'm'));
    await writeFile(join(dir, 'net.yaml'), network);
    expect((await loadConfigDirectory(dir)).mappings).toHaveLength(1);
  });

  it('render, plan, apply and doctor take the directory; a conflict exits 2 naming both files', async () => {
    await writeFile(join(dir, 'net.yaml'), network);
    await writeFile(join(dir, 'web.yaml'), mapping('web', 8080));
    const ok = await execa(process.execPath, [cli, 'render', '-f', dir, '--format', 'nft'], { reject: false });
    expect(ok.exitCode).toBe(0);
    expect(String(ok.stdout)).toContain('m-web');
    await writeFile(join(dir, 'clash.yaml'), mapping('clash', 8080));
    for (const verb of [['render'], ['plan'], ['apply', '--dry-run'], ['doctor']]) {
      const bad = await execa(process.execPath, [cli, '--state-dir', join(dir, '.state'), ...verb, '-f', dir], { reject: false });
      expect(bad.exitCode, `${verb.join(' ')}: ${String(bad.stderr)}`).toBe(2);
      expect(String(bad.stderr)).toContain(join(dir, 'clash.yaml'));
      expect(String(bad.stderr)).toContain(join(dir, 'web.yaml'));
    }
  });
});
