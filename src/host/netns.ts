// Opening a netlink socket inside a named network namespace without spawning a process: the
// addon's withNetns (native/src/natctl_nft.cc) runs a synchronous callback with the calling
// thread inside /run/netns/NAME and always puts it back. setns moves only the calling thread,
// and a socket keeps the namespace it was created in for its whole life, so a socket created
// in the callback (the `netlink` package creates and binds it in its constructor) talks to
// that namespace from then on (docs/operations.md, "Host settings").
import { loadAddon } from '../backends/native.js';

/** Runs `create` inside `netns` (undefined: right here); throws when the addon cannot do that. */
export function inNetns<T>(netns: string | undefined, create: () => T): T {
  if (netns === undefined) return create();
  const binding = loadAddon();
  if (!binding?.withNetns) throw new Error('the in-process addon is not loaded (or predates withNetns)');
  return binding.withNetns(netns, create);
}

/** Whether inNetns can enter a namespace in process (else the callers spawn inside it). */
export function canEnterNetns(): boolean {
  // The addon even with NATCTL_NATIVE=0, which keeps only nft's batches out of process (src/backends/native.ts).
  return typeof loadAddon()?.withNetns === 'function';
}
