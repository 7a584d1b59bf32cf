// route_localnet bookkeeping (src/host/prep.ts) against a fake sysctl: set where a loopback
// mapping needs it, the earlier value written down first, and put back once nothing needs it,
// by a later run that only has the state dir to go on.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Runner } from '../../src/backends/exec.js';
import { routeLocalnet } from '../../src/host/prep.js';

function fakeSysctl(values: Record<string, string>): Runner & { writes: string[] } {
  const writes: string[] = [];
  return {
    writes,
    async run(command, args) {
      expect(command).toBe('sysctl');
      const key = args[args.length - 1] ?? '';
      const name = /^net\/ipv4\/conf\/([^/]+)\/route_localnet/.exec(key)?.[1] ?? '';
      if (!(name in values)) return { exitCode: 255, stdout: '', stderr: `sysctl: cannot stat /proc/sys/${key.split('=')[0]}: No such file or directory` };
      if (args.includes('-w')) {
        values[name] = key.split('=')[1] ?? '';
        writes.push(`${name}=${values[name]}`);
        return { exitCode: 0, stdout: '', stderr: '' };
      }
      return { exitCode: 0, stdout: `${values[name]}\n`, stderr: '' };
    },
  };
}

describe('route_localnet', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-prep-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('sets it where needed, remembers the earlier value on disk, and puts it back in a later run', async () => {
    const values = { 'br0': '0', 'br.100': '0', 'br2': '1' };
    const first = fakeSysctl(values);
    expect(await routeLocalnet(first, ['br0', 'br.100', 'br2'], dir)).toEqual([]);
    expect(first.writes).toEqual(['br0=1', 'br.100=1']);
    expect(JSON.parse(await readFile(join(dir, 'route_localnet.json'), 'utf8'))).toEqual({ 'br0': '0', 'br.100': '0' });
    // A later process: br0 still needed, br.100 no longer, br2 was on before natctl and stays on.
    const second = fakeSysctl(values);
    expect(await routeLocalnet(second, ['br0'], dir)).toEqual([]);
    expect(second.writes).toEqual(['br.100=0']);
    expect(values).toEqual({ 'br0': '1', 'br.100': '0', 'br2': '1' });
    // flush: nothing needed any more; the record is gone once everything is back.
    const third = fakeSysctl(values);
    expect(await routeLocalnet(third, [], dir)).toEqual([]);
    expect(third.writes).toEqual(['br0=0']);
    await expect(readFile(join(dir, 'route_localnet.json'), 'utf8')).rejects.toThrow(/ENOENT/);
  });

  it('forgets an interface that vanished, and warns when one it needs cannot be read', async () => {
    const values: Record<string, string> = { 'br0': '0' };
    await routeLocalnet(fakeSysctl(values), ['br0'], dir);
    delete values.br0;
    const warnings = await routeLocalnet(fakeSysctl(values), ['gone0'], dir);
    expect(warnings).toEqual([expect.stringMatching(/^network gone0: route_localnet not readable/)]);
    await expect(readFile(join(dir, 'route_localnet.json'), 'utf8')).rejects.toThrow(/ENOENT/);
  });
});
