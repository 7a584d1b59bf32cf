// JSON.parse keeps the last of two equal keys without a word ({"hostPort": 80, "hostPort": 8080}),
// so a JSON config could mean something other than what its reader sees. YAML configs refuse
// duplicate keys (the yaml library's uniqueKeys); this gives JSON configs the same rule.
// The yaml library parses JSON too, but takes ~100x longer than JSON.parse on a 10,000-mapping
// config, so this is one linear pass over text that JSON.parse has already accepted.

interface Frame {
  kind: 'object' | 'array';
  path: string;
  keys: Set<string>;
  index: number;
  /** In an object: the next string is a key (after "{" or ","). */
  expectKey: boolean;
}

const childPath = (frame: Frame | undefined, key: string | number): string => {
  if (frame === undefined) return '';
  if (typeof key === 'number') return `${frame.path}[${key}]`;
  return frame.path ? `${frame.path}.${key}` : key;
};

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The first duplicate key of valid JSON `text`: its path and the key, or undefined. */
export function findDuplicateJsonKey(text: string): { path: string; key: string } | undefined {
  const stack: Frame[] = [];
  let lastKey: string | number = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const top = stack[stack.length - 1];
    if (c === QUOTE) {
      let end = i + 1;
      let escaped = false;
      for (let d = text.charCodeAt(end); d !== QUOTE; d = text.charCodeAt(end)) {
        if (d === BACKSLASH) {
          escaped = true;
          end += 2;
        } else end += 1;
      }
      if (top?.kind === 'object' && top.expectKey) {
        // Keys are compared decoded: "a" and "\u0061" are the same key.
        const key = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (top.keys.has(key)) return { path: top.path, key };
        top.keys.add(key);
        top.expectKey = false;
        lastKey = key;
      }
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      // { or [
      const key = top?.kind === 'array' ? top.index : lastKey;
      stack.push({ kind: c === 0x7b ? 'object' : 'array', path: childPath(top, key), keys: new Set(), index: 0, expectKey: c === 0x7b });
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c && top) {
      // ,
      if (top.kind === 'object') top.expectKey = true;
      else top.index++;
    }
  }
  return undefined;
}
