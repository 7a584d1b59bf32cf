// JSON.parse keeps the last of two equal keys without a word ({"hostPort": 80, "hostPort": 8080}),
// so a JSON config could mean something other than what its reader sees. YAML configs refuse
// duplicate keys (the yaml library's uniqueKeys); this gives JSON configs the same rule.
// The yaml library parses JSON too, but takes ~100x longer than JSON.parse on a 10,000-mapping
// config, so this is one linear pass over text that JSON.parse has already accepted.

interface Frame {
  kind: 'object' | 'array';
  /** The enclosing frame and this one's key in it: the path is spelled out only for a duplicate. */
  parent: Frame | undefined;
  key: string | number;
  /** Keys seen so far: a short list (a config object has a handful), a Set past `smallObject`. */
  keys: string[] | Set<string>;
  index: number;
  /** In an object: the next string is a key (after "{" or ","). */
  expectKey: boolean;
}

/** Objects with more keys than this switch to a Set (a hostile file may hold a huge object). */
const smallObject = 16;

function pathOf(frame: Frame | undefined): string {
  if (frame?.parent === undefined) return '';
  const parent = pathOf(frame.parent);
  if (typeof frame.key === 'number') return `${parent}[${frame.key}]`;
  return parent ? `${parent}.${frame.key}` : frame.key;
}

/** Adds `key` to the frame's keys; false when it was there already. */
function addKey(frame: Frame, key: string): boolean {
  const keys = frame.keys;
  if (Array.isArray(keys)) {
    if (keys.includes(key)) return false;
    keys.push(key);
    if (keys.length > smallObject) frame.keys = new Set(keys);
    return true;
  }
  if (keys.has(key)) return false;
  keys.add(key);
  return true;
}

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
        if (!addKey(top, key)) return { path: pathOf(top), key };
        top.expectKey = false;
        lastKey = key;
      }
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      // { or [
      const key = top?.kind === 'array' ? top.index : lastKey;
      stack.push({ kind: c === 0x7b ? 'object' : 'array', parent: top, key, keys: [], index: 0, expectKey: c === 0x7b });
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
