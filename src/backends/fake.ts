// An in-memory backend with the real one's interface, for unit tests of the engine. It can
// be told to fail a load, or to "load" something other than what it was given.
import type { Model } from '../model/model.js';
import { renderNftDocument } from './nft/render.js';
import type { Backend, LiveState, Ruleset } from './backend.js';

export class FakeBackend implements Backend {
  readonly name = 'fake' as const;
  /** No kernel behind it: the engine must never touch the host's interfaces for it. */
  readonly touchesHost = false;
  live: LiveState | null = null;
  loads = 0;
  failNextLoad: string | undefined;
  /** When set, a load succeeds but the kernel "holds" this text instead. */
  corruptNextLoad: string | undefined;

  render(model: Model): Ruleset {
    return { backend: 'fake', text: `${JSON.stringify(renderNftDocument(model))}\n` };
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
    return this.live;
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
}
