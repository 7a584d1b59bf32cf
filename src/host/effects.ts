// What an apply does to the host besides the ruleset (docs/operations.md, "Host settings"),
// in proportion to the change:
//   - local checks (hostIp not local, hostPort in use): one route dump and one sock_diag dump
//     per family and protocol, in process;
//   - hairpin mode and route_localnet (prep.ts): the links are listed on every apply, since a
//     new veth may have joined a bridge since the last one (one rtnetlink dump);
//   - conntrack (conntrack.ts): only for the UDP/SCTP mappings that changed; none at all when
//     nothing did.
// One host network (netlink sockets, in the managed namespace) serves all three.
import type { Runner } from '../backends/exec.js';
import type { Model } from '../model/model.js';
import { type MappingChanges, clearStaleFlows, mappingChanges } from './conntrack.js';
import { localWarnings } from './local-checks.js';
import { type HostNetwork, openHostNetwork } from './network.js';
import { prepareHost } from './prep.js';
import { hostView } from './view.js';

export { type MappingChanges, mappingChanges } from './conntrack.js';

export interface HostEffectsOptions {
  /** Where the interfaces' route_localnet values from before natctl are kept. */
  stateDir: string;
  /** The mappings this apply changed; undefined: not known, computed from the two models. */
  changes?: MappingChanges;
}

/** Applies the host side of `after` (coming from `before`); returns warnings, never throws for the host's state. */
export async function hostEffects(runner: Runner, before: Model | undefined, after: Model, options: HostEffectsOptions): Promise<string[]> {
  const changes = options.changes ?? mappingChanges(before, after);
  // The previous model's host view, updated by the changes only (view.ts).
  hostView(after, { before, changes });
  let host: HostNetwork | undefined;
  if (after.mappings.length || after.networks.length) host = await openHostNetwork(runner);
  try {
    // Independent (the checks only read; prep sets hairpin and route_localnet): side by side,
    // their dumps overlap on their own sockets. Warnings keep their order.
    const [local, prepared] = await Promise.all([
      localWarnings(runner, after, host),
      prepareHost(runner, after, { stateDir: options.stateDir, ...(host ? { host } : {}) }),
    ]);
    const flows = await clearStaleFlows(runner, before, after, { changes, ...(host ? { host } : {}) });
    return [...local, ...prepared, ...flows];
  } finally {
    host?.close();
  }
}
