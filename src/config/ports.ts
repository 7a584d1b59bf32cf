// Port and port-range values as written in configs and Docker publish strings.

export interface PortRange {
  from: number;
  to: number;
}

export function portRangeLength(range: PortRange): number {
  return range.to - range.from + 1;
}

export function formatPortRange(range: PortRange): string {
  return range.from === range.to ? String(range.from) : `${range.from}-${range.to}`;
}

/** 1-5 ASCII digits (/^\d{1,5}$/) as a port 1-65535, else undefined; by hand, as it runs for every target of every mapping. */
function parsePort(text: string): number | undefined {
  if (text.length < 1 || text.length > 5) return undefined;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return value >= 1 && value <= 65535 ? value : undefined;
}

/** "8080" or "30000-30010"; returns a reason when invalid. */
export function parsePortRange(text: string): PortRange | string {
  const trimmed = text.trim();
  const single = trimmed.includes('-') ? undefined : parsePort(trimmed);
  if (single !== undefined) return { from: single, to: single };
  const parts = trimmed.split('-');
  if (parts.length > 2) return 'is not a port (1-65535) or a range "start-end"';
  const from = parsePort(parts[0] ?? '');
  const to = parsePort(parts[1] ?? parts[0] ?? '');
  if (from === undefined || to === undefined) return 'is not a port (1-65535) or a range "start-end" of ports';
  if (from > to) return 'is a range whose start is above its end';
  return { from, to };
}

export function toPortRange(value: number | string): PortRange | string {
  return typeof value === 'number' ? { from: value, to: value } : parsePortRange(value);
}

export function rangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.from <= b.to && b.from <= a.to;
}
