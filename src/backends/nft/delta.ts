// Incremental changes (docs/ruleset.md, "Incremental changes"): the nft batch that turns
// natctl's table from one model into another when only mappings changed. A simple mapping is
// three elements (DNAT data map, forward set), a complex one its chains and two chain-map
// elements; the generation marker is swapped in the same batch, so a delta only commits on
// a kernel that still holds `from` (deleting a missing marker set fails: nothing changes).
import { type Mapping, type Model, loopbackNetworks, undeclaredTargets } from '../../model/model.js';
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
  /** Keys the kernel must no longer hold, by map or set. */
  absent: Map<string, string[]>;
  /** Chains created or refilled, with their rules. */
  chains: Map<string, NftRule[]>;
  /** Chains the delta deletes. */
  gone: string[];
  summary: { added: string[]; removed: string[]; changed: string[] };
}

/** Everything render.ts reads of a mapping; equal signatures render equal ruleset parts. */
function signature(m: Mapping): string {
  const targets = m.targets.map((t) => `${t.addr}:${t.ports.from}-${t.ports.to}`).join(',');
  const allow = m.allow.map((c) => `${c.addr}/${c.prefix}`).join(',');
  return `${m.family}|${m.proto}|${m.hostIp ?? ''}|${m.hostPorts.from}-${m.hostPorts.to}|${targets}|${allow}|${m.network ?? ''}`;
}

/**
 * Whether everything but the mappings' own parts renders the same: networks, snat and block
 * rules, and what mappings add to shared rules (hairpin of targets outside the networks,
 * loopback networks). Routed networks' direct maps follow every target: those take a full load.
 */
function sameSkeleton(a: Model, b: Model): boolean {
  const j = JSON.stringify;
  if (a.networks.some((n) => n.gatewayMode === 'routed') || b.networks.some((n) => n.gatewayMode === 'routed')) return false;
  return j(a.networks) === j(b.networks) && j(a.snat) === j(b.snat) && j(a.block) === j(b.block)
    && j(undeclaredTargets(a)) === j(undeclaredTargets(b)) && j(loopbackNetworks(a)) === j(loopbackNetworks(b));
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

/** The batch from `before` to `after`, or undefined when more than mappings changed (a full load then). */
export function renderNftDelta(before: Model, after: Model, stamp: { from: string; to: string }): DeltaPlan | undefined {
  if (!sameSkeleton(before, after)) return undefined;
  const old = new Map(before.mappings.map((m) => [m.name, m]));
  const now = new Map(after.mappings.map((m) => [m.name, m]));
  const gone: Mapping[] = [];
  const come: Mapping[] = [];
  const summary: DeltaPlan['summary'] = { added: [], removed: [], changed: [] };
  for (const [name, m] of old) {
    const n = now.get(name);
    if (!n) {
      gone.push(m);
      summary.removed.push(name);
    } else if (n !== m && signature(n) !== signature(m)) {
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

  const deletes: string[] = [];
  const absent = new Map<string, string[]>();
  const oldChains = new Set<string>();
  for (const m of gone) {
    const parts = partsOf(m);
    for (const name of parts.chains.keys()) oldChains.add(name);
    for (const { map, elem } of parts.elements) {
      const key = valueText(keyOf(elem));
      deletes.push(`delete element ${where} ${map} { ${key} }`);
      absent.set(map, [...(absent.get(map) ?? []), key]);
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
      const key = valueText(keyOf(elem));
      const text = valueText(elem);
      adds.push(`add element ${where} ${map} { ${text} }`);
      present.set(map, [...(present.get(map) ?? []), { key, text }]);
      const keys = absent.get(map);
      if (keys?.includes(key)) absent.set(map, keys.filter((k) => k !== key));
    }
  }
  // A chain name may come back in `after` (a changed mapping): flushed and refilled above, not deleted.
  const deleted = [...oldChains].filter((name) => !chains.has(name));
  const marker = [`delete set ${where} ${markerName(stamp.from)}`, `add set ${where} ${markerName(stamp.to)} { type mark; }`];
  const main = `${[...marker, ...deletes, ...chainLines, ...ruleLines, ...adds].join('\n')}\n`;
  const cleanup = deleted.length ? `${deleted.map((name) => `delete chain ${where} ${name}`).join('\n')}\n` : undefined;
  return { main, cleanup, from: stamp.from, to: stamp.to, present, absent, chains, gone: deleted, summary };
}
