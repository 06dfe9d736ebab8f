/**
 * JSON text the mutators can write but `JSON.stringify` cannot: numbers past float range
 * (`1e400` parses as Infinity), integers past 2^64, `-0`, and objects that repeat a key (JSON.parse
 * keeps the last). Values are built as ordinary JS values, with {@link RawJson} marking verbatim
 * text and {@link Pairs} marking an object as an ordered list of entries, repeats allowed.
 */

/** Text written into the JSON as it is. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** An object as ordered entries; the same key may appear more than once. */
export class Pairs {
  constructor(readonly entries: [string, unknown][]) {}
}

/** Number spellings JSON allows and `JSON.stringify` never produces. */
export const RAW_NUMBERS = ['1e400', '-1e400', '1e-400', '-0', '18446744073709551616', '9007199254740993', '1E+2', '0.0', '4096.0'];

/** Compact JSON text of `value`. */
export function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (value instanceof Pairs) {
    return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`).join(',')}}`;
  }
  if (Array.isArray(value)) return `[${value.map((v) => toJsonText(v)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`)
      .join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
  return JSON.stringify(value) ?? 'null';
}

/** A value's object entries as {@link Pairs} (a non-object becomes no entries). */
export function pairsOf(value: unknown): Pairs {
  if (value instanceof Pairs) return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return new Pairs(Object.entries(value));
  return new Pairs([]);
}
