#!/usr/bin/env node
// Builds natctl's in-process nftables addon (native/binding.gyp) with node-gyp. It runs as the
// package's `install` script, so `npm ci` builds the addon whenever libnftables-dev is there,
// and it never fails the install: without the addon natctl spawns `nft` instead
// (docs/performance.md, "In-process nftables path"). The outcome is written to
// native/build/natctl-build.json, which `natctl doctor` reports.
//
// Nothing is downloaded: node-gyp gets Node's headers from the local Node installation
// (npm's `nodedir` setting, else the prefix of the running node when it ships include/node).
//
//   node native/build.mjs            quiet (the install script)
//   node native/build.mjs --verbose  prints the compiler's output (npm run build:native)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const verbose = process.argv.includes('--verbose');
const buildDir = join(here, 'build');
const addonPath = join(buildDir, 'Release', 'natctl_nft.node');

function finish(ok, reason, log = '') {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(join(buildDir, 'natctl-build.json'), `${JSON.stringify({ ok, reason, time: new Date().toISOString() }, null, 2)}\n`);
  if (log) writeFileSync(join(buildDir, 'natctl-build.log'), log);
  const line = ok ? `natctl: built the in-process nftables addon (${reason})` : `natctl: in-process nftables addon not built: ${reason}; natctl will spawn nft instead (to build it: apt-get install libnftables-dev g++ make python3, then npm run build:native)`;
  if (verbose || !ok) process.stderr.write(`${line}\n`);
  // Never fail the install: natctl falls back to the nft binary.
  process.exit(0);
}

const includeDirs = ['/usr/include', '/usr/local/include', ...(process.env.CPATH ?? '').split(delimiter), ...(process.env.C_INCLUDE_PATH ?? '').split(delimiter)].filter(Boolean);
if (!includeDirs.some((dir) => existsSync(join(dir, 'nftables', 'libnftables.h')))) {
  finish(false, 'libnftables-dev is not installed (no nftables/libnftables.h)');
}

/** libnftables' version from its pkg-config file, compiled into the addon for `natctl doctor`. */
function libnftablesVersion() {
  const dirs = [...(process.env.PKG_CONFIG_PATH ?? '').split(delimiter), '/usr/lib/pkgconfig', '/usr/local/lib/pkgconfig', '/usr/share/pkgconfig'];
  for (const lib of ['/usr/lib', '/usr/local/lib']) {
    try {
      for (const entry of readdirSync(lib)) dirs.push(join(lib, entry, 'pkgconfig'));
    } catch {
      // no such directory
    }
  }
  for (const dir of dirs.filter(Boolean)) {
    try {
      const version = /^Version:\s*([0-9.]+)\s*$/m.exec(readFileSync(join(dir, 'libnftables.pc'), 'utf8'))?.[1];
      if (version) return version;
    } catch {
      // not here
    }
  }
  return 'unknown';
}

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // A user's install has no devDependencies; npm passes the node-gyp it bundles.
    return process.env.npm_config_node_gyp;
  }
}

/** Where Node's own headers are: never a download. */
function nodeDir() {
  const configured = process.env.npm_config_nodedir;
  if (configured && existsSync(join(configured, 'include', 'node', 'node_api.h'))) return configured;
  const prefix = dirname(dirname(process.execPath));
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return prefix;
  return undefined;
}

const gyp = nodeGyp();
if (!gyp || !existsSync(gyp)) finish(false, 'node-gyp is not available');
const nodedir = nodeDir();
if (!nodedir) finish(false, `Node's headers are not installed next to ${process.execPath} (no include/node/node_api.h) and npm's nodedir is not set`);

const args = [gyp, 'rebuild', `--nodedir=${nodedir}`, '--jobs=2', ...(verbose ? [] : ['--loglevel=error'])];
const run = spawnSync(process.execPath, args, {
  cwd: here,
  env: { ...process.env, NATCTL_LIBNFTABLES_VERSION: libnftablesVersion() },
  encoding: 'utf8',
  stdio: verbose ? 'inherit' : 'pipe',
  timeout: 300_000,
});
const log = `${run.stdout ?? ''}${run.stderr ?? ''}`;
if (run.error || run.status !== 0) {
  const lastError = log.split('\n').find((line) => /error/i.test(line))?.trim();
  finish(false, `node-gyp failed${lastError ? `: ${lastError}` : run.error ? `: ${run.error.message}` : ''} (see native/build/natctl-build.log)`, log);
}

try {
  const addon = require(addonPath);
  if (typeof addon.run !== 'function') throw new Error('no run() export');
  finish(true, `libnftables ${addon.libnftablesVersion}`, log);
} catch (error) {
  finish(false, `built but cannot be loaded: ${error instanceof Error ? error.message : String(error)}`, log);
}
