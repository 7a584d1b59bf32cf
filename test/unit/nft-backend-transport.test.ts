// The nft backend over a scripted transport: what it sends for each operation, and what it
// makes of nft's answers (a refusal, a missing table, no permission, a transport that cannot
// run), whichever transport (spawned nft or the in-process addon) carries it in production.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRunner } from '../../src/backends/exec.js';
import { NftBackend } from '../../src/backends/nft/backend.js';
import type { NftListing } from '../../src/backends/nft/json.js';
import { listingToBatch } from '../../src/backends/nft/listing.js';
import { renderNftFlush, tableFamily, tableName } from '../../src/backends/nft/render.js';
import { createNftTransport, describeNftTransport } from '../../src/backends/nft/transport.js';
import { ScriptedNftTransport } from '../../src/backends/nft/transport-fake.js';
import { nativeBindingStatus } from '../../src/backends/native.js';
import { parseConfigObject } from '../../src/config/load.js';
import { BackendCommandError, EnvironmentError } from '../../src/errors.js';
import { buildModel } from '../../src/model/build.js';

const model = buildModel(parseConfigObject({
  version: 1,
  mappings: [{ name: 'web', hostPort: 8080, target: '198.18.0.2:80' }, { name: 'dns', proto: 'udp', hostPort: 5353, target: '198.18.0.3:53' }],
}));

function backendOver(transport: ScriptedNftTransport): NftBackend {
  return new NftBackend({ runner: createRunner(), transport });
}

/** What `nft -j list table` prints for a ruleset: the objects it added, under a metainfo header. */
function listingOf(text: string): string {
  const document = JSON.parse(text) as { nftables: Record<string, Record<string, unknown>>[] };
  const objects = document.nftables.flatMap((command) => ('add' in command ? [command.add] : []));
  const seen = new Set<string>();
  const unique = objects.filter((o) => {
    const key = JSON.stringify(o);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return `${JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, ...unique] })}\n`;
}

describe('NftBackend over a scripted transport', () => {
  it('loads and checks the rendered batch as one run each, the check without committing', async () => {
    const transport = new ScriptedNftTransport().then('run').then('run');
    const backend = backendOver(transport);
    const ruleset = backend.render(model);
    await backend.check(ruleset);
    await backend.load(ruleset);
    expect(transport.calls).toEqual([
      { op: 'run', batch: ruleset.text, check: true },
      { op: 'run', batch: ruleset.text, check: false },
    ]);
    expect(transport.pending).toEqual([]);
  });

  it('turns a refusal into a BackendCommandError with nft\'s error lines, not the echoed batch', async () => {
    const stderr = 'Error: Could not process rule: Operation not supported\n{"nftables": [{"add": {"table": {}}}]}\n                ^^^^^^\n';
    const transport = new ScriptedNftTransport().then('run', { exitCode: 1, stderr });
    const backend = backendOver(transport);
    const error = await backend.load(backend.render(model)).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(BackendCommandError);
    expect((error as BackendCommandError).exitCode).toBe(1);
    expect((error as BackendCommandError).stderr).toBe('Error: Could not process rule: Operation not supported');
    expect((error as BackendCommandError).message).toContain('-j -f');
  });

  it('reads natctl\'s table by name and reports no ruleset when nft says the table does not exist', async () => {
    const transport = new ScriptedNftTransport().then('list', { exitCode: 1, stderr: 'Error: No such file or directory\nlist table inet natctl\n                 ^^^^^^\n' });
    expect(await backendOver(transport).read()).toBeNull();
    expect(transport.calls).toEqual([{ op: 'list', args: ['table', tableFamily, tableName] }]);
  });

  it('says root is needed when nft is not permitted to read, and reports any other failure as a command error', async () => {
    const denied = new ScriptedNftTransport().then('list', { exitCode: 1, stderr: 'Error: Operation not permitted\n' });
    await expect(backendOver(denied).read()).rejects.toThrow(EnvironmentError);
    const broken = new ScriptedNftTransport().then('list', { exitCode: 1, stderr: 'Error: No buffer space available\n' });
    await expect(backendOver(broken).read()).rejects.toThrow(BackendCommandError);
  });

  it('reads a listing back, verifies it against the batch, and restores exactly what it read', async () => {
    const first = backendOver(new ScriptedNftTransport());
    const ruleset = first.render(model);
    const listing = listingOf(ruleset.text);
    const transport = new ScriptedNftTransport().then('list', { stdout: listing }).then('run');
    const backend = backendOver(transport);
    const live = await backend.read();
    expect(live?.raw).toBe(listing);
    expect(backend.verify(ruleset, live)).toEqual([]);
    await backend.restore(live);
    expect(transport.calls[1]).toEqual({ op: 'run', batch: JSON.stringify(listingToBatch(JSON.parse(listing) as NftListing)), check: false });
  });

  it('flushes with one batch that removes natctl\'s table and nothing else', async () => {
    const transport = new ScriptedNftTransport().then('run');
    await backendOver(transport).flush();
    expect(transport.calls).toEqual([{ op: 'run', batch: JSON.stringify(renderNftFlush()), check: false }]);
  });

  it('passes a transport that cannot run at all through as an environment error, and asks it for the version', async () => {
    const transport = new ScriptedNftTransport()
      .then('run', { fail: new EnvironmentError('in-process libnftables: cannot enter network namespace x') })
      .then('version', { stdout: 'nftables v1.0.6 (Lester Gooch #5)\n' });
    const backend = backendOver(transport);
    await expect(backend.load(backend.render(model))).rejects.toThrow(/cannot enter network namespace/);
    expect(await backend.version()).toBe('nftables v1.0.6 (Lester Gooch #5)');
  });

  it('fails loudly when the backend makes a call the script does not expect', async () => {
    const transport = new ScriptedNftTransport().then('list');
    const backend = backendOver(transport);
    await expect(backend.load(backend.render(model))).rejects.toThrow(/expected a list call, got run/);
  });
});

describe('choosing the transport', () => {
  const saved = { ...process.env };
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'natctl-transport-'));
    delete process.env.NATCTL_NATIVE;
    delete process.env.NATCTL_NFT;
    delete process.env.NATCTL_NATIVE_ADDON;
  });
  afterEach(async () => {
    process.env = { ...saved };
    await rm(dir, { recursive: true, force: true });
  });

  it('NATCTL_NATIVE=0 spawns nft and says why', () => {
    process.env.NATCTL_NATIVE = '0';
    const transport = createNftTransport({ runner: createRunner() });
    expect(transport.kind).toBe('spawn');
    expect(describeNftTransport()).toBe('nft transport: spawned nft (the in-process addon is not loaded: disabled by NATCTL_NATIVE=0)');
    expect(nativeBindingStatus()).toMatchObject({ loaded: false, disabled: true });
  });

  it('an explicit nft binary is spawned, never replaced by the addon', () => {
    process.env.NATCTL_NFT = '/opt/nft/bin/nft';
    expect(createNftTransport({ runner: createRunner() }).kind).toBe('spawn');
    expect(describeNftTransport()).toContain('spawned /opt/nft/bin/nft (the nft binary is set explicitly (NATCTL_NFT=/opt/nft/bin/nft))');
    expect(createNftTransport({ runner: createRunner(), nftPath: '/usr/sbin/nft' }).description).toContain('spawned /usr/sbin/nft');
  });

  it('a missing or broken addon falls back to the spawned nft, with the reason', async () => {
    process.env.NATCTL_NATIVE_ADDON = join(dir, 'missing.node');
    expect(createNftTransport({ runner: createRunner() }).kind).toBe('spawn');
    expect(nativeBindingStatus()).toMatchObject({ loaded: false, disabled: false, reason: expect.stringContaining('not built') });
    const broken = join(dir, 'broken.node');
    await writeFile(broken, 'not an ELF file');
    process.env.NATCTL_NATIVE_ADDON = broken;
    expect(createNftTransport({ runner: createRunner() }).kind).toBe('spawn');
    expect(describeNftTransport()).toMatch(/spawned nft \(the in-process addon is not loaded: cannot load .*broken\.node/);
  });

  it.skipIf(process.env.CI !== 'true' && !nativeBindingStatus().loaded)('uses the addon when it is built (always under CI, whose setup installs libnftables-dev)', () => {
    const status = nativeBindingStatus();
    expect(status, JSON.stringify(status)).toMatchObject({ loaded: true });
    const transport = createNftTransport({ runner: createRunner() });
    expect(transport.kind).toBe('addon');
    expect(describeNftTransport({ netns: 'x' })).toMatch(/^nft transport: in-process libnftables \d+\.\d+\.\d+ \(native addon, a worker thread enters netns x\)$/);
  });
});
