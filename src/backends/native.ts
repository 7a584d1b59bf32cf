// The in-process libnftables binding (native/, docs/performance.md "In-process nftables path").
// `npm ci` builds it when libnftables-dev is installed (native/build.mjs); this module loads it
// once and says why not when it cannot. Without it natctl spawns the nft binary, and
// NATCTL_NATIVE=0 forces that (for nft's batches and listings only: the addon still enters
// namespaces for netlink work, loadAddon). NATCTL_NATIVE_ADDON names another addon file (tests, packagers).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** What the addon's run() resolves with: nft's return code and its captured output and errors. */
export interface NativeRunResult {
  rc: number;
  output: string;
  error: string;
}

export interface NativeBinding {
  /** Runs a batch or command through libnftables on a worker thread; `netns`: a thread enters /run/netns/NAME first. */
  run(input: string, options: { check?: boolean; netns?: string; terse?: boolean }): Promise<NativeRunResult>;
  /**
   * Runs `callback` synchronously with the calling thread inside /run/netns/NAME, then puts the
   * thread back (aborting the process if it cannot). For sockets that must belong to a namespace
   * (src/host/netns.ts). Optional: an addon file built before it existed lacks it.
   */
  withNetns?<T>(netns: string, callback: () => T): T;
  /** The libnftables version the addon was built against. */
  readonly libnftablesVersion: string;
}

export type NativeBindingStatus =
  | { loaded: true; path: string; version: string }
  | { loaded: false; disabled: boolean; path: string; reason: string };

/** Two levels below the repository root, from src/backends/ (tests) and dist/backends/ alike. */
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const defaultAddonPath = fileURLToPath(new URL('../../native/build/Release/natctl_nft.node', import.meta.url));
const buildRecord = fileURLToPath(new URL('../../native/build/natctl-build.json', import.meta.url));

let cached: { path: string; binding?: NativeBinding; reason?: string } | undefined;

function addonPath(): string {
  return process.env.NATCTL_NATIVE_ADDON || defaultAddonPath;
}

/** Why the build left no addon, as native/build.mjs recorded it. */
function buildFailure(): string | undefined {
  try {
    const record = JSON.parse(readFileSync(buildRecord, 'utf8')) as { ok?: boolean; reason?: string };
    return record.ok === false && record.reason ? record.reason : undefined;
  } catch {
    return undefined;
  }
}

function isBinding(value: unknown): value is NativeBinding {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<keyof NativeBinding, unknown>>;
  return typeof candidate.run === 'function' && typeof candidate.libnftablesVersion === 'string';
}

function load(path: string): { path: string; binding?: NativeBinding; reason?: string } {
  try {
    const loaded: unknown = createRequire(import.meta.url)(path);
    if (!isBinding(loaded)) return { path, reason: `${path} is not natctl's nftables addon` };
    return { path, binding: loaded };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'MODULE_NOT_FOUND' || (error as Error).message.includes('Cannot find module')) {
      const why = path === defaultAddonPath ? buildFailure() : undefined;
      return { path, reason: why ?? `not built (no ${displayAddonPath(path)})` };
    }
    return { path, reason: `cannot load ${path}: ${(error as Error).message.split('\n')[0]}` };
  }
}

/** The binding for nftables batches and listings, or undefined when it is disabled, not built or does not load (then natctl spawns nft). */
export function loadNativeBinding(): NativeBinding | undefined {
  if (process.env.NATCTL_NATIVE === '0') return undefined;
  return loadAddon();
}

/**
 * The addon for entering a namespace in process (withNetns: netlink sockets and /proc/sys of
 * the managed namespace, src/host/netns.ts), or undefined when it is not built or does not
 * load. NATCTL_NATIVE=0 does not turn this off: it means "never run nft's batches and listings
 * through the in-process libnftables binding" (docs/contract.md), and withNetns calls no
 * libnftables function. NATCTL_NETLINK=0 turns the netlink work off.
 */
export function loadAddon(): NativeBinding | undefined {
  const path = addonPath();
  if (cached?.path !== path) cached = load(path);
  return cached.binding;
}

export function nativeBindingStatus(): NativeBindingStatus {
  const path = addonPath();
  if (process.env.NATCTL_NATIVE === '0') return { loaded: false, disabled: true, path, reason: 'disabled by NATCTL_NATIVE=0' };
  const binding = loadNativeBinding();
  if (binding) return { loaded: true, path, version: binding.libnftablesVersion };
  return { loaded: false, disabled: false, path, reason: cached?.reason ?? 'not loaded' };
}

/** The addon's path as shown to people: relative to the package when it is the built one. */
export function displayAddonPath(path: string): string {
  return path.startsWith(packageRoot) ? path.slice(packageRoot.length) : path;
}
