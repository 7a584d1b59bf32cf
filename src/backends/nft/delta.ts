// Incremental changes (docs/ruleset.md, "Incremental changes"): the nft batch that turns
// natctl's table from one model into another when only mappings changed. A simple mapping is
// three elements (DNAT data map, forward set), a complex one its chains and two chain-map
// elements; the generation marker is swapped in the same batch, so a delta only commits on
// a kernel that still holds `from` (deleting a missing marker set fails: nothing changes).
import { isLoopback } from '../../config/addr.js';
import { type MappingChanges, sameMapping } from '../../model/diff.js';
import type { Mapping, Model } from '../../model/model.js';
import type { NftRule, NftValue } from './json.js';
import { markerName, renderMappingCommands, tableFamily, tableName } from './render.js';
import { ruleText, valueText } from './text.js';

const where = `${tableFamily} ${tableName}`;

export interface DeltaPlan {
  /** One atomic batch: old elements deleted, chains created/flushed/refilled, new elements added, marker swapped. */
  main: string;
  /**
   * Chains of removed complex mappings, deleted in a second batch once `main` committed:
   * kernels before 6.2 release a chain referenced by a map element deleted in the same
   * transaction too late (EBUSY), as kube-proxy found; 6.2 and later would take it in one.
   */
  cleanup: string | undefined;
  from: string;
  to: string;
  /** Elements the kernel must hold after the delta, by map or set: key text and the element as nft prints it (counters aside). */
  present: Map<string, { key: string; text: string }[]>;
  /** Keys the kernel must no longer hold, by map or set: the element text a `create` probe sends (any data: the key decides). */
  absent: Map<string, string[]>;
  /** The values of each key above, by its text (for a lookup by key over netlink). */
  keyValues: Map<string, unknown[]>;
  /** Chains created or refilled, with their rules. */
  chains: Map<string, NftRule[]>;
  /** Chains the delta deletes. */
  gone: string[];
  summary: { added: string[]; removed: string[]; changed: string[] };
}

/**
 * Whether everything but the mappings renders the same: networks, snat and block rules.
 * Routed networks' direct maps follow every target: those take a full load.
 */
function sameSkeleton(a: Model, b: Model): boolean {
  const j = JSON.stringify;
  if (a.networks.some((n) => n.gatewayMode === 'routed') || b.networks.some((n) => n.gatewayMode === 'routed')) return false;
  return j(a.networks) === j(b.networks) && j(a.snat) === j(b.snat) && j(a.block) === j(b.block);
}

/**
 * Whether a mapping also feeds shared rules (render.ts renderPostrouting): a target outside
 * the declared networks (the per-target hairpin masquerade) or a loopback binding (the 127/8
 * masquerade and guard). A delta touching one takes a full load instead.
 */
const feedsSharedRules = (m: Mapping): boolean => m.network === undefined || (m.hostIp !== undefined && isLoopback(m.hostIp));

/**
 * The mappings that differ, by name: a common head and tail (the usual agent change: one
 * appended, one removed) are compared in place, only the middle through maps.
 */
function differences(before: Mapping[], after: Mapping[]): { gone: Mapping[]; come: Mapping[]; summary: DeltaPlan['summary'] } {
  let head = 0;
  const shorter = Math.min(before.length, after.length);
  while (head < shorter && before[head]!.name === after[head]!.name && sameMapping(before[head]!, after[head]!)) head++;
  let tail = 0;
  while (tail < shorter - head && before[before.length - 1 - tail]!.name === after[after.length - 1 - tail]!.name
    && sameMapping(before[before.length - 1 - tail]!, after[after.length - 1 - tail]!)) tail++;
  const oldMiddle = before.slice(head, before.length - tail);
  const newMiddle = after.slice(head, after.length - tail);
  const old = new Map(oldMiddle.map((m) => [m.name, m]));
  const now = new Map(newMiddle.map((m) => [m.name, m]));
  const gone: Mapping[] = [];
  const come: Mapping[] = [];
  const summary: DeltaPlan['summary'] = { added: [], removed: [], changed: [] };
  for (const [name, m] of old) {
    const n = now.get(name);
    if (!n) {
      gone.push(m);
      summary.removed.push(name);
    } else if (!sameMapping(m, n)) {
      gone.push(m);
      come.push(n);
      summary.changed.push(name);
    }
  }
  for (const [name, n] of now) {
    if (!old.has(name)) {
      come.push(n);
      summary.added.push(name);
    }
  }
  return { gone, come, summary };
}

/** The differences the caller already knows (the agent API): a name in both lists changed. */
function known(changes: MappingChanges): ReturnType<typeof differences> {
  const added = new Set(changes.added.map((m) => m.name));
  const removed = new Set(changes.removed.map((m) => m.name));
  return {
    gone: changes.removed,
    come: changes.added,
    summary: {
      added: [...added].filter((name) => !removed.has(name)),
      removed: [...removed].filter((name) => !added.has(name)),
      changed: [...added].filter((name) => removed.has(name)),
    },
  };
}

interface Parts { chains: Map<string, NftRule[]>; elements: { map: string; elem: NftValue }[] }

function partsOf(mapping: Mapping): Parts {
  const parts: Parts = { chains: new Map(), elements: [] };
  for (const command of renderMappingCommands(mapping)) {
    if (!('add' in command)) continue;
    const object = command.add;
    if ('chain' in object) parts.chains.set(object.chain.name, []);
    else if ('rule' in object) parts.chains.get(object.rule.chain)?.push(object.rule);
    else if ('map' in object) for (const elem of object.map.elem ?? []) parts.elements.push({ map: object.map.name, elem });
    else if ('set' in object) for (const elem of object.set.elem ?? []) parts.elements.push({ map: object.set.name, elem });
  }
  return parts;
}

/** The key of an element (a map's [key, data], a set's value), without its counter and comment. */
function keyOf(elem: NftValue): NftValue {
  const key = Array.isArray(elem) ? (elem[0] as NftValue) : elem;
  const inner = (key as { elem?: { val: NftValue } }).elem;
  return inner ? inner.val : key;
}

/** An element to probe a key with: a verdict map's data becomes `accept` (the chain it jumped to may be gone). */
function probeText(elem: NftValue): string {
  if (!Array.isArray(elem)) return valueText(keyOf(elem));
  const [key, data] = elem as [NftValue, NftValue];
  const verdict = typeof data === 'object' && data !== null && ('jump' in data || 'goto' in data);
  return verdict ? `${valueText(keyOf(key))} : accept` : `${valueText(keyOf(key))} : ${valueText(data)}`;
}

/** Whether a probe is for the same key as `elem` (a changed mapping re-adds its key). */
function probeElement(probe: string, elem: NftValue): NftValue {
  return probe.split(' : ')[0] === valueText(keyOf(elem)) ? elem : probe;
}

/** The batch from `before` to `after`, or undefined when more than mappings changed (a full load then). */
export function renderNftDelta(before: Model, after: Model, stamp: { from: string; to: string }, changes?: MappingChanges): DeltaPlan | undefined {
  if (!sameSkeleton(before, after)) return undefined;
  const { gone, come, summary } = changes ? known(changes) : differences(before.mappings, after.mappings);
  // A name moved between the common part and the middle (reordered configs) is seen twice: full load.
  if ([...gone, ...come].some(feedsSharedRules) || new Set(come.map((m) => m.name)).size !== come.length) return undefined;

  const deletes: string[] = [];
  const absent = new Map<string, string[]>();
  const keyValues = new Map<string, unknown[]>();
  const noteKey = (elem: NftValue): string => {
    const key = keyOf(elem);
    const text = valueText(key);
    const concat = (key as { concat?: unknown[] } | null)?.concat;
    keyValues.set(text, Array.isArray(concat) ? concat : [key]);
    return text;
  };
  const oldChains = new Set<string>();
  for (const m of gone) {
    const parts = partsOf(m);
    for (const name of parts.chains.keys()) oldChains.add(name);
    for (const { map, elem } of parts.elements) {
      const key = noteKey(elem);
      deletes.push(`delete element ${where} ${map} { ${key} }`);
      absent.set(map, [...(absent.get(map) ?? []), probeText(elem)]);
    }
  }
  const chains = new Map<string, NftRule[]>();
  // Every chain exists (created or emptied) before any rule: a rule may jump to a later one.
  const chainLines: string[] = [];
  const ruleLines: string[] = [];
  const adds: string[] = [];
  const present = new Map<string, { key: string; text: string }[]>();
  for (const m of come) {
    const parts = partsOf(m);
    for (const [name, rules] of parts.chains) {
      chains.set(name, rules);
      chainLines.push(`add chain ${where} ${name}`, `flush chain ${where} ${name}`);
      for (const rule of rules) ruleLines.push(`add rule ${where} ${name} ${ruleText(rule)}`);
    }
    for (const { map, elem } of parts.elements) {
      const key = noteKey(elem);
      const text = valueText(elem);
      adds.push(`add element ${where} ${map} { ${text} }`);
      present.set(map, [...(present.get(map) ?? []), { key, text }]);
      const probes = absent.get(map);
      if (probes?.length) absent.set(map, probes.filter((p) => valueText(keyOf(probeElement(p, elem))) !== key));
    }
  }
  // A chain name may come back in `after` (a changed mapping): flushed and refilled above, not deleted.
  const deleted = [...oldChains].filter((name) => !chains.has(name));
  const marker = [`delete set ${where} ${markerName(stamp.from)}`, `add set ${where} ${markerName(stamp.to)} { type mark; }`];
  const main = `${[...marker, ...deletes, ...chainLines, ...ruleLines, ...adds].join('\n')}\n`;
  const cleanup = deleted.length ? `${deleted.map((name) => `delete chain ${where} ${name}`).join('\n')}\n` : undefined;
  return { main, cleanup, from: stamp.from, to: stamp.to, present, absent, keyValues, chains, gone: deleted, summary };
}

