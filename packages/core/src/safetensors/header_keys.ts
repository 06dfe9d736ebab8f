/**
 * The first key that occurs twice at the top level of a JSON object text, or null. `JSON.parse`
 * keeps the last of repeated keys without a word, so a header naming one tensor twice would load
 * one of the two silently; this scan finds the repeat.
 *
 * `text` must already have parsed as a JSON object: the scan only walks the top-level keys and
 * skips each value by counting brackets outside strings, which is exact for valid JSON.
 */
export function duplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let i = text.indexOf('{') + 1;
  let depth = 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (depth === 1 && expectsKey(text, i)) {
        // Decoding through JSON.parse compares keys as JSON.parse does ("a" and "\u0061" are one key).
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
      }
      i = end + 1;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) break;
    }
    i++;
  }
  return null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

/** Index of the quote closing the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i += 2;
    else if (c === QUOTE) return i;
    else i++;
  }
  return text.length - 1;
}

/** A string at depth 1 is a key when the last non-space character before it is `{` or `,`. */
function expectsKey(text: string, quote: number): boolean {
  let j = quote - 1;
  while (j >= 0 && isJsonSpace(text.charCodeAt(j))) j--;
  const c = text.charCodeAt(j);
  return c === OPEN_BRACE || c === COMMA;
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
