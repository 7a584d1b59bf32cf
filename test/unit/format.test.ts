// The CLI's human-readable output at agent scale: one line per mapping, whatever the count.
import { describe, expect, it } from 'vitest';
import { formatStatus } from '../../src/cli/format.js';
import type { StatusReport } from '../../src/engine/controller.js';

describe('natctl status output', () => {
  it('prints a table of 150,000 mappings (column widths computed without one argument per row)', () => {
    const n = 150_000;
    const report: StatusReport = {
      backend: 'nft',
      active: true,
      generation: { number: 3, time: '2026-01-01T00:00:00.000Z', hash: 'ab' },
      mappings: Array.from({ length: n }, (_, i) => ({ name: `m${i}`, description: `tcp *:${1 + (i % 65535)}`, target: `198.18.0.2:${1 + (i % 65535)}`, connections: i, packets: 2 * i, bytes: 100 * i, state: 'active' as const })),
      blocked: [],
      drift: { drifted: false, missing: [], extra: [] },
    };
    const lines = formatStatus(report).trimEnd().split('\n');
    expect(lines).toHaveLength(n + 3); // heading, column header, rows, "in sync"
    expect(lines[1]).toMatch(/^MAPPING +HOST SIDE +TARGET +CONNS +PACKETS +BYTES +STATE$/);
    expect(lines[n + 1]).toMatch(new RegExp(`^m${n - 1} +tcp \\*:\\d+ +198\\.18\\.0\\.2:\\d+ +${n - 1} +${2 * (n - 1)} +${100 * (n - 1)} +active$`));
    // Every row is padded to the widest cell of its column: the STATE column starts at one offset.
    expect(new Set(lines.slice(1, n + 2).map((l) => l.search(/(STATE|active)$/))).size).toBe(1);
  });
});
