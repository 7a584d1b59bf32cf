// The state dir and its generations (issue 7 items 8, 11, 12, 13): every component from the
// state dir down is checked, corrupt generations are skipped and reported, a truncated lock
// file blocks nobody, generation temp files are swept.
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeBackend } from '../../src/backends/fake.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Controller } from '../../src/engine/controller.js';
import { acquireLock } from '../../src/engine/lock.js';
import { StateStore } from '../../src/engine/state.js';
import { EnvironmentError, LockError, UsageError } from '../../src/errors.js';

const configA = parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] });
const configB = parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.3:80' }] });

describe('state dir', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('refuses a group/other-writable component below the state dir, and a symlink there', async () => {
    const root = join(dir, 'state');
    await mkdir(join(root, 'netns'), { recursive: true, mode: 0o700 });
    await chmod(join(root, 'netns'), 0o777);
    const store = new StateStore(join(root, 'netns', 'lab'), root);
    await expect(store.ensure()).rejects.toThrow(/netns is writable by group or others/);
    await chmod(join(root, 'netns'), 0o700);
    const elsewhere = join(dir, 'elsewhere');
    await mkdir(elsewhere, { mode: 0o700 });
    await symlink(elsewhere, join(root, 'netns', 'lab'));
    const error = await store.ensure().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvironmentError);
    expect((error as Error).message).toMatch(/lab is a symlink/);
    await expect(store.record({ backend: 'fake', hash: 'h', kind: 'flush', config: { version: 1 }, ruleset: '', live: '' })).rejects.toBeInstanceOf(EnvironmentError);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  it('refuses a state dir that is itself a symlink', async () => {
    await mkdir(join(dir, 'real'), { mode: 0o700 });
    await symlink(join(dir, 'real'), join(dir, 'link'));
    await expect(new StateStore(join(dir, 'link')).ensure()).rejects.toThrow(/is a symlink/);
  });

  it('creates missing components 0700', async () => {
    const store = new StateStore(join(dir, 'state', 'netns', 'lab'), join(dir, 'state'));
    await store.ensure();
    expect(await readdir(join(dir, 'state', 'netns'))).toEqual(['lab']);
  });

  it('an empty NATCTL_STATE_DIR is unset, never the current directory', async () => {
    const saved = process.env.NATCTL_STATE_DIR;
    process.env.NATCTL_STATE_DIR = '';
    try {
      const controller = await Controller.open({ backend: new FakeBackend() });
      expect(controller.state.dir).toBe('/var/lib/natctl');
    } finally {
      if (saved === undefined) delete process.env.NATCTL_STATE_DIR;
      else process.env.NATCTL_STATE_DIR = saved;
    }
    await expect(Controller.open({ backend: new FakeBackend(), stateDir: '' })).rejects.toBeInstanceOf(UsageError);
  });
});

describe('corrupt generations', () => {
  let dir: string;
  let backend: FakeBackend;
  let controller: Controller;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
    backend = new FakeBackend();
    controller = await Controller.open({ backend, stateDir: join(dir, 'state') });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('one corrupt generation blocks neither history, plan, apply nor rollback; it is reported', async () => {
    await controller.apply(configA);
    await controller.apply(configB);
    await writeFile(join(dir, 'state', 'gen-00000001.json'), '{"generation": 1, "ti', { mode: 0o600 });
    const report = await controller.historyReport();
    expect(report.generations.map((g) => g.generation)).toEqual([2]);
    expect(report.warnings).toEqual([expect.stringMatching(/^generation 1 is unreadable and was skipped .*gen-00000001\.json: not valid JSON/)]);
    expect((await controller.history()).map((g) => g.generation)).toEqual([2]);
    expect((await controller.plan(configA)).changes).toHaveLength(1);
    await expect(controller.rollback(1)).rejects.toThrow(/generation 1 .* is unreadable/);
    const applied = await controller.apply(configA);
    expect(applied.generation?.generation).toBe(3);
    const rolled = await controller.rollback();
    expect(rolled.generation?.generation).toBe(4);
  });

  it('a corrupt latest generation is skipped: the apply plans against the one before and warns', async () => {
    await controller.apply(configA);
    await writeFile(join(dir, 'state', 'gen-00000002.json'), JSON.stringify({ generation: 2, kind: 'what' }), { mode: 0o600 });
    const plan = await controller.plan(configB);
    expect(plan.changes.map((c) => `${c.op} ${c.name}`)).toEqual(['change web']);
    expect(plan.warnings?.[0]).toMatch(/generation 2 is unreadable and was skipped .*unknown kind "what"/);
    const result = await controller.apply(configB);
    expect(result.generation?.generation).toBe(3);
    expect(result.warnings[0]).toMatch(/generation 2 is unreadable/);
  });

  it('sweeps generation temp files a killed writer left', async () => {
    await controller.apply(configA);
    await writeFile(join(dir, 'state', 'gen-00000002.json.tmp-4242'), '{"gen', { mode: 0o600 });
    await controller.apply(configB);
    expect((await readdir(join(dir, 'state'))).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});

describe('lock', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('an empty or truncated lock file blocks nobody', async () => {
    await writeFile(join(dir, 'lock'), '', { mode: 0o600 });
    const lock = await acquireLock(dir, 200);
    await lock.release();
    await writeFile(join(dir, 'lock'), '{"pid": 12', { mode: 0o600 });
    await (await acquireLock(dir, 200)).release();
  });

  it('a held lock blocks a second holder (even in the same process) until released, and names the holder', async () => {
    const held = await acquireLock(dir, 200);
    const error = await acquireLock(dir, 200).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).holderPid).toBe(process.pid);
    await held.release();
    await (await acquireLock(dir, 200)).release();
  });

  it('refuses a symlink planted as the lock file', async () => {
    await symlink(join(dir, 'target'), join(dir, 'lock'));
    await expect(acquireLock(dir, 200)).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['lock']);
  });
});
