// Two models compared object by object (mappings, networks, snat and block rules, by name):
// what a plan shows, and what tells the host layer which mappings moved or went away.
import { type Model, emptyModel } from './model.js';

export type ChangeOp = 'add' | 'remove' | 'change';
export type ObjectKind = 'mapping' | 'network' | 'snat' | 'block';

export interface Change {
  op: ChangeOp;
  kind: ObjectKind;
  name: string;
  before?: unknown;
  after?: unknown;
}

export interface ModelDiff {
  changes: Change[];
  unchanged: number;
}

type Named = { name: string };

function diffNamed(kind: ObjectKind, before: Named[], after: Named[], plan: ModelDiff): void {
  const old = new Map(before.map((o) => [o.name, o]));
  for (const object of after) {
    const previous = old.get(object.name);
    old.delete(object.name);
    if (!previous) plan.changes.push({ op: 'add', kind, name: object.name, after: object });
    // The same object is unchanged without a look (the agent API keeps untouched mappings' objects).
    else if (previous !== object && JSON.stringify(previous) !== JSON.stringify(object)) plan.changes.push({ op: 'change', kind, name: object.name, before: previous, after: object });
    else plan.unchanged++;
  }
  for (const object of old.values()) plan.changes.push({ op: 'remove', kind, name: object.name, before: object });
}

export function diffModels(before: Model | undefined, after: Model): ModelDiff {
  const plan: ModelDiff = { changes: [], unchanged: 0 };
  const from = before ?? emptyModel();
  diffNamed('network', from.networks, after.networks, plan);
  diffNamed('mapping', from.mappings, after.mappings, plan);
  diffNamed('snat', from.snat, after.snat, plan);
  diffNamed('block', from.block, after.block, plan);
  return plan;
}
