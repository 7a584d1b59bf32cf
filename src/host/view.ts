// What the host side of an apply needs to know about a model, gathered in one pass over its
// mappings and then kept up to date by the changes alone (docs/operations.md, "Host settings"):
// at 50,000 mappings even one cold pass costs milliseconds, so an apply that changes one
// mapping must not walk all of them again. A view belongs to one Model object (a WeakMap); an
// apply that knows its changes hands the previous model's view on to the new model.
import { isLoopback } from '../config/addr.js';
import type { Proto } from '../config/schema.js';
import { type Mapping, type Model, networkHolding } from '../model/model.js';
import type { MappingChanges } from './conntrack.js';

export interface HostView {
  /** Mappings per protocol. */
  protos: Map<Proto, number>;
  /** Mappings with a specific (not wildcard) host IP, by name. */
  bound: Map<string, Mapping>;
  /** Networks carrying a loopback-bound mapping (they need route_localnet), with how many. */
  loopback: Map<string, number>;
  /** Mappings without a declared network, by name: their targets may need hairpin on a bridge found by address. */
  unnetworked: Map<string, Mapping>;
  /** Per protocol, how many single-port mappings publish each host port. */
  singlePorts: Map<Proto, Uint32Array>;
  /** Mappings publishing a port range, by name. */
  ranged: Map<string, Mapping>;
  size: number;
}

const isUnspecified = (ip: string): boolean => ip === '0.0.0.0' || ip === '::';

/** A specific host IP, or undefined for every local address. */
export const boundIp = (m: Mapping): string | undefined => (m.hostIp !== undefined && !isUnspecified(m.hostIp) ? m.hostIp : undefined);

function count<K>(map: Map<K, number>, key: K, by: number): void {
  const next = (map.get(key) ?? 0) + by;
  if (next > 0) map.set(key, next);
  else map.delete(key);
}

function addTo(view: HostView, m: Mapping, by: 1 | -1): void {
  view.size += by;
  count(view.protos, m.proto, by);
  const keep = <V>(map: Map<string, V>, value: V): void => void (by > 0 ? map.set(m.name, value) : map.delete(m.name));
  if (boundIp(m) !== undefined) keep(view.bound, m);
  if (m.hostIp !== undefined && m.network !== undefined && isLoopback(m.hostIp)) count(view.loopback, m.network, by);
  if (m.network === undefined) keep(view.unnetworked, m);
  if (m.hostPorts.from === m.hostPorts.to) {
    let ports = view.singlePorts.get(m.proto);
    if (!ports) view.singlePorts.set(m.proto, (ports = new Uint32Array(65536)));
    ports[m.hostPorts.from] = (ports[m.hostPorts.from] ?? 0) + by;
  } else keep(view.ranged, m);
}

function build(model: Model): HostView {
  const view: HostView = { protos: new Map(), bound: new Map(), loopback: new Map(), unnetworked: new Map(), singlePorts: new Map(), ranged: new Map(), size: 0 };
  for (const m of model.mappings) addTo(view, m, 1);
  return view;
}

const views = new WeakMap<Model, HostView>();

/**
 * The view of `model`. `from`: the model it replaces and the changes between the two; when
 * that model's view is at hand it is updated by the changes only (and moves to `model`).
 */
export function hostView(model: Model, from?: { before: Model | undefined; changes: MappingChanges }): HostView {
  const known = views.get(model);
  if (known) return known;
  const previous = from?.before ? views.get(from.before) : undefined;
  let view: HostView | undefined;
  if (previous && from && previous.size - from.changes.removed.length + from.changes.added.length === model.mappings.length) {
    views.delete(from.before as Model);
    for (const m of from.changes.removed) addTo(previous, m, -1);
    for (const m of from.changes.added) addTo(previous, m, 1);
    view = previous;
  }
  view ??= build(model);
  views.set(model, view);
  return view;
}

/** Whether some mapping may publish `port` of `proto` (single ports by table, ranges one by one). */
export function publishes(view: HostView, proto: Proto, port: number): boolean {
  if ((view.singlePorts.get(proto)?.[port] ?? 0) > 0) return true;
  for (const m of view.ranged.values()) if (m.proto === proto && port >= m.hostPorts.from && port <= m.hostPorts.to) return true;
  return false;
}

/** Targets of mappings that lie in no declared network (model.ts undeclaredTargets, from the view). */
export function undeclaredTargetsOf(model: Model, view: HostView): { family: 4 | 6; addr: string }[] {
  const seen = new Map<string, { family: 4 | 6; addr: string }>();
  for (const mapping of view.unnetworked.values()) {
    for (const target of mapping.targets) {
      if (!networkHolding(model, target.addr)) seen.set(target.addr, { family: mapping.family, addr: target.addr });
    }
  }
  return [...seen.values()];
}
