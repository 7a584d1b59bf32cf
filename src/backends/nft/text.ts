// Prints natctl's nftables JSON batch in nft's own syntax: what natctl loads (docs/ruleset.md:
// nft 1.0.6's JSON parser cannot declare a map whose data is a concatenation), and what
// `render --format nft` shows. It covers the expressions render.ts emits and what nft lists
// back of them (restore prints a listing through it); the JSON stays the internal form.
import type { NftChain, NftCounter, NftDocument, NftMap, NftRule, NftSet, NftValue } from './json.js';

const quote = (text: string): string => `"${text.includes('"') || text.includes('\\') ? text.replace(/["\\]/g, '') : text}"`;

/** Interface names are always quoted: bare, `drop`, `tcp` or `counter` would be read as keywords. */
const interfaceKeys = new Set(['iifname', 'oifname', 'ibrname', 'obrname']);
const isInterfaceMatch = (left: unknown): boolean =>
  typeof left === 'object' && left !== null && 'meta' in left && interfaceKeys.has(String((left as { meta: { key?: unknown } }).meta.key));

function interfaceValue(v: unknown): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'object' && v !== null && 'set' in v && Array.isArray(v.set)) return `{ ${v.set.map(interfaceValue).join(', ')} }`;
  return value(v);
}

/** /^[A-Za-z0-9_.:@/-]+$/ by hand: every address and name of a 50,000-mapping batch passes here. */
function isBare(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // . / 0-9 : (0x2e-0x3a), @ A-Z (0x40-0x5a), a-z, _ and -
    if ((c >= 0x2e && c <= 0x3a) || (c >= 0x40 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d) continue;
    return false;
  }
  return true;
}

/** A concatenation's parts joined by " . ", without an array of part texts. */
function concatText(parts: unknown[]): string {
  let out = parts.length ? value(parts[0]) : '';
  for (let i = 1; i < parts.length; i++) out += ` . ${value(parts[i])}`;
  return out;
}

function value(v: unknown): string {
  if (typeof v === 'string') return isBare(v) ? v : quote(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `${value(v[0])} : ${value(v[1])}`;
  if (v === null || typeof v !== 'object') return '?';
  // The first (only) key, without Object.entries: a ruleset of 50,000 mappings prints 500,000 values.
  let key = '';
  for (key in v) break;
  const body = (v as Record<string, unknown>)[key] as Record<string, unknown> & unknown[];
  switch (key) {
    case 'payload': return `${body.protocol} ${body.field}`;
    case 'meta': return `meta ${body.key}`;
    case 'ct': return `ct${body.dir ? ` ${body.dir}` : ''}${body.family ? ` ${body.family}` : ''} ${body.key}`;
    case 'fib': return `fib ${(body.flags as string[]).join(' . ')} ${body.result}`;
    case 'concat': return concatText(body as unknown[]);
    case 'prefix': return `${body.addr}/${body.len}`;
    case 'range': return `${value(body[0])}-${value(body[1])}`;
    case 'set': return `{ ${(body as unknown[]).map(value).join(', ')} }`;
    case 'map': return `${value(body.key)} map ${value(body.data)}`;
    case 'numgen': return `numgen ${body.mode} mod ${body.mod}`;
    case 'jump': return `jump ${body.target}`;
    case 'goto': return `goto ${body.target}`;
    case 'elem': return `${value(body.val)}${counterText(body.counter, false)}${typeof body.comment === 'string' ? ` comment ${quote(body.comment)}` : ''}`;
    default: return `${key}`;
  }
}

/**
 * A counter with its values when they are not zero (a restore puts them back); `always`: the
 * bare keyword otherwise. An element's zero counter is left to its set's `counter` template.
 */
function counterText(counter: unknown, always: boolean): string {
  const c = counter as { packets?: number; bytes?: number } | null | undefined;
  if (c && typeof c === 'object' && ((c.packets ?? 0) > 0 || (c.bytes ?? 0) > 0)) return ` counter packets ${c.packets ?? 0} bytes ${c.bytes ?? 0}`;
  return always && c !== undefined ? ' counter' : '';
}

function statement(s: Record<string, unknown>): string {
  const [[key, body]] = Object.entries(s) as [[string, Record<string, unknown>]];
  switch (key) {
    case 'match': {
      const op = body.op === '==' || body.op === 'in' ? '' : `${body.op} `;
      return `${value(body.left)} ${op}${isInterfaceMatch(body.left) ? interfaceValue(body.right) : value(body.right)}`;
    }
    case 'counter': return counterText(body ?? null, true).trimStart();
    case 'vmap': return `${value(body.key)} vmap ${value(body.data)}`;
    case 'dnat':
    case 'snat': {
      const port = body.port === undefined ? '' : `:${value(body.port)}`;
      const addr = String(body.family) === 'ip6' && port ? `[${value(body.addr)}]` : value(body.addr);
      return `${key} ${body.family} to ${addr}${port}`;
    }
    case 'jump':
    case 'goto': return `${key} ${body.target}`;
    default: return key;
  }
}

function chainHeader(chain: NftChain): string {
  if (!chain.hook) return '';
  // Named priorities only where nft 1.0.6 accepts them (dstnat is refused in the output hook).
  const named: Record<string, string> = { 'prerouting -100': 'dstnat', 'postrouting 100': 'srcnat', 'forward 0': 'filter' };
  const prio = named[`${chain.hook} ${chain.prio}`] ?? String(chain.prio);
  return `\t\ttype ${chain.type} hook ${chain.hook} priority ${prio}; policy ${chain.policy};\n`;
}

/** One value (an element, a key) in nft's text syntax. */
export const valueText = (v: unknown): string => value(v);
/** A rule's statements in nft's text syntax, with its comment. */
export function ruleText(rule: NftRule): string {
  const comment = rule.comment ? ` comment ${quote(rule.comment)}` : '';
  return `${rule.expr.map((s) => statement(s as Record<string, unknown>)).join(' ')}${comment}`;
}

const typeText = (type: string | string[]): string => (Array.isArray(type) ? type.join(' . ') : type);
const hasCounter = (stmt: unknown[] | undefined): boolean => (stmt ?? []).some((s) => typeof s === 'object' && s !== null && 'counter' in s);

/** Elements one per line: a listing of 50,000 mappings is one statement either way. */
const elementsText = (elem: NftValue[]): string => `\t\telements = { ${elem.map((e) => value(e)).join(',\n\t\t\t     ')} }`;

/** The document as one batch of nft's text syntax: the table replaced (add, delete, declare) when the document does so. */
export function documentToBatchText(document: NftDocument): string {
  const replaces = document.nftables.some((c) => 'delete' in c && 'table' in c.delete);
  const declares = document.nftables.filter((c) => 'add' in c).length > 1;
  const table = document.nftables.find((c): c is { add: { table: { family: string; name: string } } } => 'add' in c && 'table' in c.add);
  const name = table ? `${table.add.table.family} ${table.add.table.name}` : '';
  const prelude = replaces ? `add table ${name}\ndelete table ${name}\n` : '';
  return declares ? `${prelude}${documentToText(document)}` : prelude;
}

export function documentToText(document: NftDocument): string {
  const maps = new Map<string, NftMap & { elem: [NftValue, NftValue][] }>();
  const sets = new Map<string, NftSet>();
  const counters: NftCounter[] = [];
  const chains = new Map<string, { chain: NftChain; rules: NftRule[] }>();
  let tableLine = '';
  for (const command of document.nftables) {
    if (!('add' in command)) continue;
    const object = command.add;
    if ('table' in object) tableLine = `table ${object.table.family} ${object.table.name}`;
    else if ('map' in object) maps.set(object.map.name, { ...object.map, elem: [...(object.map.elem ?? [])] });
    else if ('set' in object) sets.set(object.set.name, object.set);
    else if ('counter' in object) counters.push(object.counter);
    else if ('chain' in object) chains.set(object.chain.name, { chain: object.chain, rules: [] });
    else if ('rule' in object) chains.get(object.rule.chain)?.rules.push(object.rule);
  }
  const out: string[] = [`${tableLine} {`];
  for (const c of counters) out.push(`\tcounter ${c.name} {`, `\t\tpackets ${c.packets ?? 0} bytes ${c.bytes ?? 0}`, '\t}', '');
  for (const map of maps.values()) {
    out.push(`\tmap ${map.name} {`, `\t\ttype ${typeText(map.type)} : ${map.map}`);
    if (map.flags?.length) out.push(`\t\tflags ${map.flags.join(',')}`);
    if (hasCounter(map.stmt)) out.push('\t\tcounter');
    if (map.elem.length) out.push(elementsText(map.elem));
    out.push('\t}', '');
  }
  for (const set of sets.values()) {
    out.push(`\tset ${set.name} {`, `\t\ttype ${typeText(set.type)}`);
    if (set.flags?.length) out.push(`\t\tflags ${set.flags.join(',')}`);
    if (hasCounter(set.stmt)) out.push('\t\tcounter');
    if (set.elem?.length) out.push(elementsText(set.elem));
    out.push('\t}', '');
  }
  for (const { chain, rules } of chains.values()) {
    out.push(`\tchain ${chain.name} {`);
    const header = chainHeader(chain);
    if (header) out.push(header.trimEnd());
    for (const rule of rules) out.push(`\t\t${ruleText(rule)}`);
    out.push('\t}', '');
  }
  if (out[out.length - 1] === '') out.pop();
  out.push('}');
  return `${out.join('\n')}\n`;
}
