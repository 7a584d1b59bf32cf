// The in-process libnftables binding (native/). This version ships none, so natctl always
// runs the nft binary; NATCTL_NATIVE=0 already forces that path for when one exists, and
// the fault-injection tests set it so they keep testing the spawned-nft path.

export interface NativeBindingStatus {
  loaded: boolean;
  reason: string;
}

export function nativeBindingStatus(): NativeBindingStatus {
  if (process.env.NATCTL_NATIVE === '0') return { loaded: false, reason: 'disabled by NATCTL_NATIVE=0' };
  return { loaded: false, reason: 'not built in this version' };
}
