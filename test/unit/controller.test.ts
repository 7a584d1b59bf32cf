// The engine against the fake backend: plan, no-op, verify-and-restore, history, rollback, locking
// (the full path: a fake without the incremental capabilities; the delta flow is in incremental.test.ts).
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeBackend, fakeWithoutDeltas } from '../../src/backends/fake.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Controller } from '../../src/engine/controller.js';
import { acquireLock } from '../../src/engine/lock.js';
import { ApplyError, LockError, RollbackError, UsageError } from '../../src/errors.js';

const configA = parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] });
const configB = parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.3:80' }, { name: 'db', hostPort: 5432, target: '198.18.0.4' }] });

describe('controller', () => {
  let dir: string;
  let backend: FakeBackend;
  let controller: Controller;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
    backend = fakeWithoutDeltas();
    controller = await Controller.open({ backend, stateDir: join(dir, 'state') });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('applies, records a generation with private permissions, and skips an unchanged re-apply', async () => {
    const first = await controller.apply(configA);
    expect(first.changed).toBe(true);
    expect(first.generation?.generation).toBe(1);
    expect((await stat(join(dir, 'state'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'state', 'gen-00000001.json'))).mode & 0o777).toBe(0o600);
    const second = await controller.apply(configA);
    expect(second.changed).toBe(false);
    expect(backend.loads).toBe(1);
  });

  it('plans per mapping: add, change, remove', async () => {
    await controller.apply(configA);
    const plan = await controller.plan(configB);
    expect(plan.changes.map((c) => `${c.op} ${c.kind} ${c.name}`)).toEqual(['change mapping web', 'add mapping db']);
    const back = await controller.plan(configA);
    expect(back.changes).toEqual([]);
  });

  it('a dry run changes nothing', async () => {
    const result = await controller.apply(configA, { dryRun: true });
    expect(result.dryRun).toBe(true);
    expect(backend.loads).toBe(0);
    expect(await controller.history()).toEqual([]);
  });

  it('a refused load leaves the previous ruleset and reports it', async () => {
    await controller.apply(configA);
    const before = backend.live;
    backend.failNextLoad = 'Error: Could not process rule: File exists';
    await expect(controller.apply(configB)).rejects.toMatchObject({ rolledBack: true, exitCode: 1 });
    expect(backend.live).toBe(before);
  });

  it('a load that does not verify is rolled back to the previous ruleset', async () => {
    await controller.apply(configA);
    const before = backend.live;
    backend.corruptNextLoad = 'garbage';
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).message).toMatch(/restored/);
    expect(backend.live).toEqual(before);
    expect((await controller.history()).length).toBe(1);
  });

  it('repairs drift instead of calling it a no-op', async () => {
    await controller.apply(configA);
    backend.live = { ...backend.live!, normalized: 'tampered', raw: 'tampered' };
    expect((await controller.status()).drift.drifted).toBe(true);
    const result = await controller.apply(configA);
    expect(result.changed).toBe(true);
    expect(result.repairedDrift).toBe(true);
    expect((await controller.status()).drift.drifted).toBe(false);
  });

  it('rolls back to an earlier generation and keeps history', async () => {
    await controller.apply(configA);
    await controller.apply(configB);
    const result = await controller.rollback();
    expect(result.generation?.generation).toBe(3);
    expect(JSON.parse(result.generation!.config.mappings!.length.toString())).toBe(1);
    await expect(controller.rollback(99)).rejects.toBeInstanceOf(UsageError);
  });

  it('keeps the last ten generations', async () => {
    for (let i = 0; i < 12; i++) {
      await controller.apply(parseConfigObject({ version: 1, mappings: [{ hostPort: 1000 + i, target: '198.18.0.2' }] }));
    }
    expect((await controller.history()).map((g) => g.generation)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it('exits 5 with a RollbackError when restoring the previous ruleset fails', async () => {
    await controller.apply(configA);
    backend.corruptNextLoad = 'garbage';
    backend.restore = async () => {
      throw new Error('restore refused');
    };
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RollbackError);
    expect((error as RollbackError).exitCode).toBe(5);
    expect((error as Error).message).toMatch(/natctl rollback/);
  });

  it('a restore that reports failure but did put the snapshot back is read back: exit 1, not 5 (issue 7 item 10)', async () => {
    await controller.apply(configA);
    const before = backend.live;
    backend.corruptNextLoad = 'garbage';
    backend.restore = async (live) => {
      backend.live = live;
      throw new Error('restore reported failure');
    };
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as ApplyError).exitCode).toBe(1);
    expect((error as Error).message).toMatch(/restored and verified/);
    expect(backend.live).toBe(before);
  });

  it('a generation that cannot be recorded (ENOSPC) restores the previous ruleset and exits 1 (issue 7 item 8)', async () => {
    await controller.apply(configA);
    const before = backend.live;
    controller.state.record = async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyError);
    expect((error as Error).message).toMatch(/could not be recorded .*ENOSPC[\s\S]*restored and verified/);
    expect(backend.live).toBe(before);
    expect((await controller.history()).length).toBe(1);
  });

  it('refuses up front, untouched, to manage a table whose snapshot it could not restore (issue 7 item 9)', async () => {
    await controller.apply(configA);
    const before = backend.live;
    (backend as FakeBackend & { restorable: () => Promise<string[]> }).restorable = async () => ['natctl\'s table holds objects it did not create (set hand)'];
    const error = await controller.apply(configB).catch((e: unknown) => e);
    expect((error as { exitCode?: number }).exitCode).toBe(3);
    expect((error as Error).message).toMatch(/set hand[\s\S]*nothing was changed/);
    expect(backend.loads).toBe(1);
    expect(backend.live).toBe(before);
  });

  it('refuses a state dir that group or others can write', async () => {
    const open = join(dir, 'open');
    await mkdir(open, { mode: 0o777 });
    await chmod(open, 0o777);
    const unsafe = await Controller.open({ backend, stateDir: open });
    await expect(unsafe.apply(configA)).rejects.toThrow(/writable by group or others/);
    expect(backend.loads).toBe(0);
  });

  it('takes over the lock of a holder that died', async () => {
    await controller.state.ensure();
    const dead = await execa(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    await writeFile(join(dir, 'state', 'lock'), JSON.stringify({ pid: Number(dead.stdout) }));
    const lock = await acquireLock(join(dir, 'state'), 500);
    await lock.release();
  });

  it('serializes on the lock, names the holder on timeout, and takes over a dead holder\'s lock', async () => {
    const stateDir = join(dir, 'state');
    await controller.state.ensure();
    const held = await acquireLock(stateDir, 1000);
    const waiting = await Controller.open({ backend, stateDir, lockTimeoutMs: 200 });
    const error = await waiting.apply(configA).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).message).toContain(`pid ${process.pid}`);
    await held.release();
    await expect(waiting.apply(configA)).resolves.toMatchObject({ changed: true });
  });
});
