// Test-side helpers over the shared sandbox (src/sandbox).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot } from '../../src/backends/exec.js';

export { Sandbox, addr, type NatctlRun } from '../../src/sandbox/topology.js';
export { isRoot };

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** End-to-end suites run when root; under CI=true a missing privilege is a failure, not a skip. */
export function e2eEnabled(): boolean {
  if (isRoot()) return true;
  if (process.env.CI === 'true') throw new Error('end-to-end tests need root under CI=true');
  return false;
}
