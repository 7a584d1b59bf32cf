// An in-memory backend with the real one's interface, for unit tests of the engine. It can
// be told to fail a load, or to "load" something other than what it was given, and it has
// the incremental capabilities (holds, renderDelta, loadDelta, verifyDelta) with faults of
// their own, so the engine's delta flow is proven without a kernel (docs/operations.md).
import type { Model } from '../model/model.js';
import { renderNftDocument } from './nft/render.js';
import { type Backend, type Delta, type LiveState, type MappingCounters, type Ruleset, type StatusExpectation, type StatusReading, readStatusByListing } from './backend.js';

/**
 * What a delta does when loaded: refused (nothing changes), "committed" as something else, or
 * committed and then reported as failed (a tool whose exit status lies).
 */
export type FakeDeltaFault = 'refuse' | 'corrupt' | 'load-then-fail';

const marker = (stamp: string): string => `# natctl stamp ${stamp}\n`;

export class FakeBackend implements Backend {
  readonly name = 'fake' as const;
  /** No kernel behind it: the engine must never touch the host's interfaces for it. */
  readonly touchesHost = false;
  live: LiveState | null = null;
  loads = 0;
  /** Whole-table reads (the hot path must not do any). */
  reads = 0;
  /** Deltas committed. */
  deltas = 0;
  failNextLoad: string | undefined;
  /** When set, a load succeeds but the kernel "holds" this text instead. */
  corruptNextLoad: string | undefined;
  /** Faults of the next loadDelta calls, first one first. */
  deltaFaults: FakeDeltaFault[] = [];
  /** Every delta loaded, refused ones included, in order. */
  deltaLog: Delta[] = [];
  /** Lazily rendered states a delta left behind: the model and stamp they hold. */
  private readonly held = new WeakMap<LiveState, { model: Model; stamp: string }>();
  private readonly afterOf = new WeakMap<Delta, { before: Model; after: Model; from: string; to: string }>();

  render(model: Model, options: { stamp?: string } = {}): Ruleset {
    return { backend: 'fake', text: `${JSON.stringify(renderNftDocument(model))}\n${options.stamp ? marker(options.stamp) : ''}` };
  }
  async check(): Promise<void> {}
  async load(ruleset: Ruleset): Promise<void> {
    if (this.failNextLoad) {
      const reason = this.failNextLoad;
      this.failNextLoad = undefined;
      throw new Error(reason);
    }
    this.loads++;
    const text = this.corruptNextLoad ?? ruleset.text;
    this.corruptNextLoad = undefined;
    this.live = { raw: text, normalized: text, counters: [], blocked: [] };
  }
  async read(): Promise<LiveState | null> {
    this.reads++;
    return this.live;
  }
  /** status through the interface's generic path: read (counted in `reads`) and verify. */
  readStatus(expected: () => StatusExpectation): Promise<StatusReading> {
    return readStatusByListing(this, expected);
  }
  verify(ruleset: Ruleset, live: LiveState | null): string[] {
    return live?.raw === ruleset.text ? [] : ['live ruleset differs from the one loaded'];
  }
  async restore(live: LiveState | null): Promise<void> {
    this.live = live;
  }
  async flush(): Promise<void> {
    this.live = null;
  }
  async version(): Promise<string> {
    return 'fake 1.0';
  }

  async holds(stamp: string): Promise<boolean> {
    if (!this.live) return false;
    const held = this.held.get(this.live);
    return held ? held.stamp === stamp : this.live.raw.endsWith(marker(stamp));
  }

  /** Mapping changes only; networks, snat and block rules need a full load (as the nft backend's). */
  renderDelta(before: Model, after: Model, stamp: { from: string; to: string }): Delta | undefined {
    const rest = (m: Model): string => JSON.stringify([m.networks, m.snat, m.block]);
    if (rest(before) !== rest(after)) return undefined;
    const old = new Map(before.mappings.map((m) => [m.name, m]));
    const summary: Delta['summary'] = { added: [], removed: [], changed: [] };
    for (const mapping of after.mappings) {
      const previous = old.get(mapping.name);
      old.delete(mapping.name);
      if (previous === undefined) summary.added.push(mapping.name);
      else if (previous !== mapping && JSON.stringify(previous) !== JSON.stringify(mapping)) summary.changed.push(mapping.name);
    }
    summary.removed.push(...old.keys());
    const delta: Delta = { backend: 'fake', text: `delta ${stamp.from} -> ${stamp.to}: +${summary.added.join(',')} -${summary.removed.join(',')} ~${summary.changed.join(',')}\n`, summary };
    this.afterOf.set(delta, { before, after, ...stamp });
    return delta;
  }

  async loadDelta(delta: Delta): Promise<void> {
    this.deltaLog.push(delta);
    const target = this.afterOf.get(delta);
    if (!target) throw new Error('not a delta this backend rendered');
    const fault = this.deltaFaults.shift();
    if (fault === 'refuse') throw new Error('Error: Could not process rule: No such file or directory (refused delta)');
    if (!(await this.holds(target.from))) throw new Error(`the kernel does not hold ${target.from}: delta refused`);
    this.deltas++;
    if (fault === 'corrupt') {
      // Committed, but the kernel holds something else: the new stamp over the old mappings.
      this.live = this.lazyState(target.before, target.to, this.live?.counters ?? []);
      return;
    }
    // Untouched mappings keep their counters; added and changed ones start at zero.
    const touched = new Set([...delta.summary.added, ...delta.summary.removed, ...delta.summary.changed]);
    const counters: MappingCounters[] = (this.live?.counters ?? []).filter((c) => !touched.has(c.name));
    this.live = this.lazyState(target.after, target.to, counters);
    if (fault === 'load-then-fail') throw new Error('Error: Could not process rule: No buffer space available (after committing)');
  }

  async verifyDelta(delta: Delta): Promise<string[]> {
    const target = this.afterOf.get(delta);
    const held = this.live ? this.held.get(this.live) : undefined;
    if (!target || !held || held.stamp !== target.to || held.model !== target.after) return [`the kernel does not hold delta ${delta.text.trim()}`];
    return [];
  }

  /** A state whose listing is rendered only when read (deltas stay O(change) in the fake too). */
  private lazyState(model: Model, stamp: string, counters: MappingCounters[]): LiveState {
    let text: string | undefined;
    const render = (): string => (text ??= this.render(model, { stamp }).text);
    const state: LiveState = {
      get raw() {
        return render();
      },
      get normalized() {
        return render();
      },
      counters,
      blocked: [],
    };
    this.held.set(state, { model, stamp });
    return state;
  }
}

/** A FakeBackend without the incremental capabilities: every change is a full load. */
export function fakeWithoutDeltas(): FakeBackend {
  const backend = new FakeBackend();
  const plain = backend as Partial<Pick<FakeBackend, 'holds' | 'renderDelta' | 'loadDelta' | 'verifyDelta'>>;
  plain.holds = undefined;
  plain.renderDelta = undefined;
  plain.loadDelta = undefined;
  plain.verifyDelta = undefined;
  return backend;
}
