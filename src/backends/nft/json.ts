// The slice of libnftables' JSON schema (man libnftables-json) that natctl emits, typed so
// the renderer cannot build a malformed document, plus small constructors.

export type NftValue = string | number | boolean | NftExpr | NftValue[];
export interface NftExpr {
  [key: string]: NftValue | null | undefined | Record<string, unknown>;
}
export type NftStatement = NftExpr;

export interface NftTable { family: string; name: string; handle?: number }
export interface NftChain {
  family: string; table: string; name: string; handle?: number;
  type?: 'filter' | 'nat'; hook?: string; prio?: number; policy?: 'accept' | 'drop';
}
export interface NftMap {
  family: string; table: string; name: string; handle?: number;
  /** The data type: `verdict`, or a concatenation as nft lists it (`ipv4_addr . inet_service`). */
  type: string | string[]; map: string; flags?: string[];
  /** Statements every element gets (`[{ counter: null }]`: a counter per element). */
  stmt?: NftStatement[];
  elem?: [NftValue, NftValue][];
}
export interface NftSet {
  family: string; table: string; name: string; handle?: number;
  type: string | string[]; flags?: string[];
  stmt?: NftStatement[];
  elem?: NftValue[];
}
/** A named counter (natctl's generation marker, docs/ruleset.md). */
export interface NftCounter { family: string; table: string; name: string; handle?: number; packets?: number; bytes?: number }
export interface NftRule {
  family: string; table: string; chain: string; handle?: number;
  expr: NftStatement[]; comment?: string;
}

/** One command of a batch, or one object of a listing. */
export type NftObject =
  | { table: NftTable }
  | { chain: NftChain }
  | { map: NftMap }
  | { set: NftSet }
  | { counter: NftCounter }
  | { rule: NftRule };

export type NftCommand = { add: NftObject } | { delete: NftObject } | { flush: NftObject } | { metainfo: Record<string, unknown> };
export interface NftDocument { nftables: NftCommand[] }
export interface NftListing { nftables: (NftObject | { metainfo: Record<string, unknown> })[] }

export const payload = (protocol: string, field: string): NftExpr => ({ payload: { protocol, field } });
export const meta = (key: string): NftExpr => ({ meta: { key } });
/** libnftables JSON puts a ct key's family inside the key: {"key": "ip saddr", "dir": "original"}. */
export const ct = (key: string, options: { family?: 'ip' | 'ip6'; dir?: 'original' | 'reply' } = {}): NftExpr => ({
  ct: { key: options.family ? `${options.family} ${key}` : key, ...(options.dir ? { dir: options.dir } : {}) },
});
export const concat = (...items: NftValue[]): NftExpr => ({ concat: items });
export const prefix = (addr: string, len: number): NftExpr => ({ prefix: { addr, len } });
export const range = (from: NftValue, to: NftValue): NftExpr => ({ range: [from, to] });
export const set = (items: NftValue[]): NftExpr => ({ set: items });

export const match = (left: NftValue, right: NftValue, op: '==' | '!=' | 'in' = '=='): NftStatement => ({ match: { op, left, right } });
export const counter = (): NftStatement => ({ counter: { packets: 0, bytes: 0 } });
/**
 * A set or map element with its own counter and, when given, a comment (the mapping's name), as
 * nft 1.0.6 lists it: {"elem": {"val": KEY, "comment": NAME, "counter": {...}}}.
 */
// Every rendered element's counter starts at zero: one shared, frozen object (100,000 of them at 50,000 mappings).
const zeroCounter = Object.freeze({ packets: 0, bytes: 0 });
export const element = (val: NftValue, comment?: string): NftExpr => ({ elem: comment === undefined ? { val, counter: zeroCounter } : { val, comment, counter: zeroCounter } });
export const accept = (): NftStatement => ({ accept: null });
export const drop = (): NftStatement => ({ drop: null });
export const ret = (): NftStatement => ({ return: null });
export const jump = (target: string): NftStatement => ({ jump: { target } });
export const vmap = (key: NftValue, data: NftValue): NftStatement => ({ vmap: { key, data } });
export const masquerade = (): NftStatement => ({ masquerade: null });

/** fib daddr type local: the destination is one of this host's addresses. */
export const daddrIsLocal = (): NftStatement => match({ fib: { result: 'type', flags: ['daddr'] } }, 'local');
