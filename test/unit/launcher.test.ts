// The launcher (src/backends/launcher.ts): a big process hands its commands to a small helper
// that spawns them. Forced on here (NATCTL_LAUNCHER=1); the runner gives the same answers
// through it as when it spawns directly: output, exit code, a missing command, a timeout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { helperPid, launch } from '../../src/backends/launcher.js';
import { EnvironmentError } from '../../src/errors.js';

const saved = process.env.NATCTL_LAUNCHER;

describe('launcher', () => {
  beforeAll(() => {
    process.env.NATCTL_LAUNCHER = '1';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.NATCTL_LAUNCHER;
    else process.env.NATCTL_LAUNCHER = saved;
  });

  it('runs commands through the helper once it is up, with the runner\'s answers', async () => {
    // The first call starts the helper and spawns directly; later ones go through it once it is ready.
    let through: Promise<unknown> | undefined;
    for (let i = 0; i < 200 && !through; i++) {
      through = launch('true', [], 10_000);
      if (!through) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(await through).toMatchObject({ exitCode: 0 });
    const direct = await launch('sh', ['-c', 'echo out; echo "err $LC_ALL" >&2; exit 3'], 10_000);
    expect(direct).toEqual({ id: expect.any(Number), exitCode: 3, stdout: 'out\n', stderr: 'err C\n' });
    expect(await launch('natctl-no-such-command', [], 10_000)).toMatchObject({ error: { code: 'ENOENT' } });
    // The environment as it is at each call, not as it was when the helper started.
    process.env.NATCTL_LAUNCHER_PROBE = 'now';
    expect(await launch('sh', ['-c', 'echo "$NATCTL_LAUNCHER_PROBE"'], 10_000)).toMatchObject({ stdout: 'now\n' });
    delete process.env.NATCTL_LAUNCHER_PROBE;
    expect(await launch('sleep', ['5'], 200)).toMatchObject({ timedOut: true });

    const runner = createRunner();
    expect(await runner.run('sh', ['-c', 'printf "a b"; exit 2'])).toEqual({ exitCode: 2, stdout: 'a b', stderr: '' });
    await expect(runner.run('natctl-no-such-command', [])).rejects.toBeInstanceOf(EnvironmentError);
    expect(await runner.run('sleep', ['5'], { timeoutMs: 200 })).toMatchObject({ exitCode: 124 });

    // A helper that dies with a command out answers it as failed (it may have run: never run
    // twice); from then on commands are spawned directly.
    const pid = helperPid();
    expect(pid).toBeDefined();
    const out = runner.run('sleep', ['5']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    process.kill(pid!, 'SIGKILL');
    expect(await out).toMatchObject({ exitCode: 128, stderr: expect.stringContaining('may or may not have run') });
    expect(launch('true', [], 10_000)).toBeUndefined();
    expect(await runner.run('sh', ['-c', 'echo direct'])).toEqual({ exitCode: 0, stdout: 'direct\n', stderr: '' });
  }, 30_000);
});
