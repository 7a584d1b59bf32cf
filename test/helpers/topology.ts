// Test-side helpers over the shared sandbox (src/sandbox).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export { Sandbox, addr, type NatctlRun } from '../../src/sandbox/topology.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** End-to-end suites run when root; under CI=true a missing privilege is a failure, not a skip. */
export function e2eEnabled(): boolean {
  if (isRoot()) return true;
  if (process.env.CI === 'true') throw new Error('end-to-end tests need root under CI=true');
  return false;
}
