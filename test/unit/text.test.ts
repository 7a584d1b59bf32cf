// nft's text syntax of single values: the hand-written checks (text.ts) print what the regex
// rules say, for any string, so a batch stays byte-for-byte the same.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { valueText } from '../../src/backends/nft/text.js';

const expected = (s: string): string => (/^[A-Za-z0-9_.:@/-]+$/.test(s) ? s : `"${s.replace(/["\\]/g, '')}"`);

describe('nft text values', () => {
  it('prints a string bare exactly when nft reads it back as one word, else quoted without quotes or backslashes', () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(...'aZ09_.:@/-"\\ é\n'.split('')) }), fc.string({ unit: 'binary' }));
    fc.assert(fc.property(text, (s) => {
      expect(valueText(s)).toBe(expected(s));
      expect(valueText({ concat: [s, 80, s] })).toBe(`${expected(s)} . 80 . ${expected(s)}`);
      expect(valueText({ elem: { val: { concat: ['tcp', 1] }, comment: s } })).toBe(`tcp . 1 comment "${s.replace(/["\\]/g, '')}"`);
    }), { numRuns: 3000 });
  });
});
