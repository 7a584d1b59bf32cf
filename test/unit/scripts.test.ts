// The README's two commands, `./scripts/demo.sh` and `./scripts/test.sh`, work as written for
// root on a machine without sudo (fresh Debian) and for a user with sudo. A stand-in `sudo`
// on PATH records how it was called; the user is uid 65534 (nobody), so this needs root.
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, repoRoot } from '../helpers/topology.js';

/** The image this suite runs on has no sudo of its own: the stand-in is the only one on PATH. */
const realSudo = spawnSync('sh', ['-c', 'command -v sudo'], { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } }).status === 0;

describe.runIf(isRoot())('quick-start scripts', () => {
  let dir = '';
  let bin = '';
  const systemPath = '/usr/sbin:/usr/bin:/sbin:/bin';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-scripts-'));
    await chmod(dir, 0o755);
    // The scripts are copied, so uid 65534 can read them wherever the checkout lives.
    await mkdir(join(dir, 'repo/scripts'), { recursive: true });
    for (const name of ['demo.sh', 'test.sh', 'setup.sh', 'as-root.sh']) await copyFile(join(repoRoot, 'scripts', name), join(dir, 'repo/scripts', name));
    await chmod(join(dir, 'repo'), 0o755);
    await chmod(join(dir, 'repo/scripts'), 0o755);
    bin = join(dir, 'bin');
    await mkdir(bin, { mode: 0o755 });
    await chmod(bin, 0o755);
    await writeFile(join(bin, 'sudo'), `#!/bin/sh\necho "$@" > ${join(dir, 'sudo-args')}\nexit 0\n`, { mode: 0o755 });
    await writeFile(join(dir, 'sudo-args'), '', { mode: 0o666 });
    await chmod(join(dir, 'sudo-args'), 0o666);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const asNobody = (script: string, path: string) =>
    execa(`./scripts/${script}`, [], { cwd: join(dir, 'repo'), reject: false, uid: 65534, gid: 65534, env: { PATH: path, CI: 'true' }, extendEnv: false });

  it.each(['demo.sh', 'test.sh', 'setup.sh'])('%s as a user with sudo runs itself again through sudo', async (script) => {
    await writeFile(join(dir, 'sudo-args'), '');
    const run = await asNobody(script, `${bin}:${systemPath}`);
    expect(run.exitCode, String(run.stderr)).toBe(0);
    expect((await readFile(join(dir, 'sudo-args'), 'utf8')).trim()).toBe(`--preserve-env=CI -- bash ./scripts/${script}`);
  });

  describe.runIf(!realSudo)('without sudo', () => {
    it.each(['demo.sh', 'test.sh'])('%s as a user without sudo exits 3 saying how to run it', async (script) => {
      const run = await asNobody(script, systemPath);
      expect(run.exitCode).toBe(3);
      expect(String(run.stderr)).toContain('sudo is not installed: run it as root');
      expect(String(run.stderr)).not.toContain('command not found');
    });
  });

  it('as root, the scripts go on without sudo (none is needed, none may exist)', async () => {
    await writeFile(join(dir, 'sudo-args'), '');
    const probe = join(dir, 'probe.sh');
    await writeFile(probe, `set -eu\nsource ${join(dir, 'repo/scripts/as-root.sh')}\necho continued as root\n`);
    const run = await execa('bash', [probe], { reject: false, env: { PATH: `${bin}:${systemPath}` }, extendEnv: false });
    expect(run.exitCode).toBe(0);
    expect(String(run.stdout)).toBe('continued as root');
    expect(await readFile(join(dir, 'sudo-args'), 'utf8')).toBe('');
  });

  it('the README tells both kinds of user the same two commands', async () => {
    const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
    const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## A config'));
    expect(quickStart).toMatch(/^\.\/scripts\/demo\.sh /m);
    expect(quickStart).toMatch(/^\.\/scripts\/test\.sh /m);
    expect(quickStart).not.toMatch(/^sudo \.\/scripts/m);
  });
});
