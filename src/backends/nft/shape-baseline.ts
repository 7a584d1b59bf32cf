// What status learned about natctl's table (docs/operations.md, "status"): for the render of a
// generation without its simple mappings' elements (its fingerprint), the digests of the
// kernel's table (netlink-read.ts, shapeDigest) seen while a full rule-by-rule comparison found
// the kernel equal to that render. A digest seen again proves the rules, chains and small maps
// unchanged without listing them through nft (seconds at 50,000 mappings). Kept in the state
// dir, small (a few hashes), written whole by rename; a lost or unreadable file is relearned.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import type { NftDocument } from './json.js';
import { simpleLayout } from './netlink-read.js';

const kept = 16;

/** Written whole, then renamed over the file: a reader sees the old file or the new one. */
const tempOf = (file: string): string => `${file}.${process.pid}.tmp`;

interface Entry { fingerprint: string; digests: string[] }

function entriesOf(text: string): Entry[] {
  const parsed = JSON.parse(text) as { entries?: unknown };
  if (!Array.isArray(parsed.entries)) return [];
  return (parsed.entries as Entry[]).filter((e) => typeof e?.fingerprint === 'string' && Array.isArray(e.digests) && e.digests.every((d) => typeof d === 'string'));
}

/** The fingerprint of a render: every object and rule but the simple mappings' elements and the generation marker. */
export function shapeFingerprint(document: NftDocument): string {
  const hash = createHash('sha256');
  for (const command of document.nftables) {
    if (!('add' in command)) continue;
    const object = command.add as unknown as Record<string, Record<string, unknown>>;
    const body = object.map ?? object.set;
    if (body && /^g-[0-9a-f]+$/.test(String(body.name))) continue;
    if (body && simpleLayout(String(body.name))) {
      const { elem: _elem, ...rest } = body;
      hash.update(JSON.stringify({ [object.map ? 'map' : 'set']: rest }));
    } else hash.update(JSON.stringify(object));
    hash.update('\n');
  }
  return hash.digest('hex');
}

export class ShapeBaseline {
  private entries: Entry[] | undefined;
  constructor(private readonly file?: string) {}

  private async load(): Promise<Entry[]> {
    if (this.entries) return this.entries;
    try {
      this.entries = entriesOf(await readFile(this.file ?? '', 'utf8'));
    } catch {
      this.entries = [];
    }
    return this.entries;
  }

  /** learn, synchronously (verify is): a small file written whole. */
  learnNow(fingerprint: string, digest: string): void {
    if (!this.entries) {
      try {
        this.entries = entriesOf(readFileSync(this.file ?? '', 'utf8'));
      } catch {
        this.entries = [];
      }
    }
    this.remember(fingerprint, digest);
    const file = this.file;
    if (file === undefined) return;
    try {
      writeFileSync(tempOf(file), this.text(), { mode: 0o600 });
      renameSync(tempOf(file), file);
    } catch {
      // Not learned on disk: status compares in full once and learns then.
    }
  }

  private text(): string {
    return JSON.stringify({ entries: this.entries });
  }

  private remember(fingerprint: string, digest: string): void {
    const entries = this.entries ?? [];
    const entry = entries.find((e) => e.fingerprint === fingerprint) ?? { fingerprint, digests: [] };
    entry.digests = [digest, ...entry.digests.filter((d) => d !== digest)].slice(0, 4);
    this.entries = [entry, ...entries.filter((e) => e !== entry)].slice(0, kept);
  }

  async knows(fingerprint: string, digest: string): Promise<boolean> {
    return (await this.load()).some((e) => e.fingerprint === fingerprint && e.digests.includes(digest));
  }

  /** Remembers that `digest` was seen while the kernel agreed with the render of `fingerprint`. */
  async learn(fingerprint: string, digest: string): Promise<void> {
    await this.load();
    this.remember(fingerprint, digest);
    const file = this.file;
    if (file === undefined) return;
    try {
      await writeFile(tempOf(file), this.text(), { mode: 0o600 });
      await rename(tempOf(file), file);
    } catch {
      // Not learned on disk (a read-only or full state dir): the next status compares in full again.
    }
  }
}
