// A backend-neutral engine (issue 9, item 1): backends are built in one place from a name,
// own their scratch files, classify their failures and give their own recovery hints; the
// engine asks capabilities, never names.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend, LiveState, Ruleset } from '../../src/backends/backend.js';
import type { Runner } from '../../src/backends/exec.js';
import { createBackend, openBackend } from '../../src/backends/factory.js';
import { IptablesBackend } from '../../src/backends/iptables/backend.js';
import { FakeBackend } from '../../src/backends/fake.js';
import { BackendFailure, isNotFound } from '../../src/backends/failure.js';
import { classifyNftFailure, NftBackend } from '../../src/backends/nft/backend.js';
import { renderNftDocument } from '../../src/backends/nft/render.js';
import { parseConfigObject } from '../../src/config/load.js';
import { Controller } from '../../src/engine/controller.js';
import { EnvironmentError, RollbackError } from '../../src/errors.js';
import type { Model } from '../../src/model/model.js';

const runner = (answer: { exitCode: number; stdout?: string; stderr?: string }): Runner => ({
  run: async () => ({ exitCode: answer.exitCode, stdout: answer.stdout ?? '', stderr: answer.stderr ?? '' }),
});
const config = parseConfigObject({ version: 1, mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }] });

describe('backend factory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('builds each backend from its name', () => {
    expect(createBackend('fake', { runner: runner({ exitCode: 0 }) })).toBeInstanceOf(FakeBackend);
    expect(createBackend('nft', { runner: runner({ exitCode: 0 }) })).toBeInstanceOf(NftBackend);
    expect(createBackend('iptables-legacy', { runner: runner({ exitCode: 0 }) })).toBeInstanceOf(IptablesBackend);
    expect(() => createBackend('bogus' as 'nft', { runner: runner({ exitCode: 0 }) })).toThrow(EnvironmentError);
  });

  it("auto prefers the last generation's backend while it works (one version call, no probe), else probes", async () => {
    const calls: string[] = [];
    const answering = (fails: RegExp): Runner => ({
      run: async (command, args) => {
        calls.push(`${command} ${args.join(' ')}`);
        return fails.test(command) ? { exitCode: 127, stdout: '', stderr: `${command}: not found` } : { exitCode: 0, stdout: `${command} v1 (legacy)`, stderr: '' };
      },
    });
    const kept = await openBackend('auto', { runner: answering(/^$/), previous: 'iptables-legacy' });
    expect(kept.backend.name).toBe('iptables-legacy');
    expect(kept.reason).toMatch(/last generation was applied with iptables-legacy, which still works/);
    expect(calls).toEqual(['iptables-legacy-restore --version']);
    calls.length = 0;
    // Never a silent switch away from the backend whose rules the kernel may hold.
    const kept2 = await openBackend('auto', { runner: answering(/iptables/), previous: 'iptables-legacy', nftPath: '/opt/nft' });
    expect(kept2.backend.name).toBe('iptables-legacy');
    expect(kept2.reason).toMatch(/does not work now; natctl keeps it .*--backend to switch/);
    calls.length = 0;
    const probed = await openBackend('auto', { runner: answering(/iptables/), nftPath: '/opt/nft' });
    expect(probed.backend.name).toBe('nft');
    expect(probed.reason).toMatch(/kernel accepts/);
    expect(calls.some((c) => c.startsWith('/opt/nft -c -j -f '))).toBe(true);
    const fallback = await openBackend('auto', { runner: answering(/nft/), nftPath: '/opt/nft' });
    expect(fallback.backend.name).toBe('iptables-legacy');
    expect(fallback.reason).toMatch(/\/opt\/nft does not work/);
    expect((await openBackend('nft', { runner: answering(/^$/) })).reason).toMatch(/--backend nft/);
  });

  it('the nft backend keeps its scratch files under STATE/tmp and sweeps what a killed apply left', async () => {
    const backend = createBackend('nft', { runner: runner({ exitCode: 0 }), stateDir: dir });
    await mkdir(join(dir, 'tmp', 'natctl-left'), { recursive: true });
    await writeFile(join(dir, 'tmp', 'natctl-left', 'ruleset.json'), '{}');
    expect(await backend.sweep?.()).toBe(1);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('passes backend options through: the nft path', async () => {
    const calls: string[] = [];
    const recording: Runner = { run: async (command) => (calls.push(command), { exitCode: 0, stdout: 'nftables v1.0.6', stderr: '' }) };
    const controller = await Controller.open({ backend: 'nft', backendOptions: { nftPath: '/opt/nft' }, stateDir: dir });
    expect(controller.backend.name).toBe('nft');
    await createBackend('nft', { runner: recording, nftPath: '/opt/nft' }).version();
    expect(calls).toEqual(['/opt/nft']);
  });
});

describe('classified backend failures', () => {
  it('nft failures are classified once, by the backend', async () => {
    expect(classifyNftFailure(1, 'Error: Could not process rule: No such file or directory')).toBe('not-found');
    expect(classifyNftFailure(1, 'Error: Could not process rule: File exists')).toBe('exists');
    expect(classifyNftFailure(1, 'Error: Could not process rule: Operation not permitted')).toBe('permission');
    expect(classifyNftFailure(1, 'Error: Could not process rule: Device or resource busy')).toBe('busy');
    expect(classifyNftFailure(1, 'Error: Could not process rule: No buffer space available')).toBe('resources');
    expect(classifyNftFailure(1, 'Error: Could not process rule: Operation not supported')).toBe('unsupported');
    expect(classifyNftFailure(1, 'Error: syntax error, unexpected newline')).toBe('invalid');
    const backend = new NftBackend({ runner: runner({ exitCode: 1, stderr: 'Error: Could not process rule: File exists' }), nftPath: 'nft' });
    const error = await backend.load({ backend: 'nft', text: '{}' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendFailure);
    expect((error as BackendFailure).kind).toBe('exists');
    expect(isNotFound(error)).toBe(false);
  });

  it('a missing table reads as no ruleset; other failures are thrown classified', async () => {
    expect(await new NftBackend({ runner: runner({ exitCode: 1, stderr: 'Error: No such file or directory\nlist table inet natctl' }), nftPath: 'nft' }).read()).toBeNull();
    const busy = await new NftBackend({ runner: runner({ exitCode: 1, stderr: 'Error: Device or resource busy' }), nftPath: 'nft' }).read().catch((e: unknown) => e);
    expect((busy as BackendFailure).kind).toBe('busy');
  });
});

/** A backend the engine has never heard of: it must work through capabilities alone. */
class OtherBackend implements Backend {
  readonly name = 'iptables-legacy' as const;
  readonly touchesHost = false;
  readonly inner = new FakeBackend();
  swept = 0;
  restoreFails = false;
  render(model: Model): Ruleset {
    return { backend: this.name, text: JSON.stringify(renderNftDocument(model)) };
  }
  check(): Promise<void> {
    return Promise.resolve();
  }
  async load(ruleset: Ruleset): Promise<void> {
    this.inner.live = { raw: 'tampered', normalized: 'tampered', counters: [], blocked: [] };
    void ruleset;
  }
  read(): Promise<LiveState | null> {
    return this.inner.read();
  }
  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    return live?.raw === ruleset.text ? [] : ['differs'];
  }
  async restore(): Promise<void> {
    throw new Error('restore refused');
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  version(): Promise<string> {
    return Promise.resolve('other 1');
  }
  async sweep(): Promise<number> {
    this.swept++;
    return 0;
  }
  recoveryHint(): string {
    return 'Inspect it with: other-tool --list';
  }
}

describe('engine through capabilities', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("sweeps the backend's own scratch files and names the backend's recovery command, not nft's", async () => {
    const backend = new OtherBackend();
    const controller = await Controller.open({ backend, stateDir: join(dir, 'state') });
    const error = await controller.apply(config).catch((e: unknown) => e);
    expect(backend.swept).toBe(1);
    expect(error).toBeInstanceOf(RollbackError);
    expect((error as Error).message).toContain('Inspect it with: other-tool --list');
    expect((error as Error).message).not.toMatch(/\bnft\b/);
  });

  it('the engine source names no backend and branches on no backend name', async () => {
    const dirOf = join(import.meta.dirname, '../../src/engine');
    for (const file of await readdir(dirOf)) {
      const text = await readFile(join(dirOf, file), 'utf8');
      expect(text, file).not.toMatch(/\bnft\b|iptables|backend\.name [!=]==|NftBackend|FakeBackend/);
    }
  });
});
