/**
 * A JSON-like rendering of a value for an error message, at most `maxLength` characters. Unlike
 * `JSON.stringify` it never recurses deeply (a header or config nested 20,000 levels overflows the
 * stack there), never walks more of a huge list than it prints, and shows the numbers JSON cannot
 * write (`1e400` parses as Infinity) as themselves instead of `null`.
 */
export function previewJson(value: unknown, maxLength = 80): string {
  let text = '';
  const full = () => text.length > maxLength;
  const walk = (v: unknown, depth: number): void => {
    if (full()) return;
    if (typeof v === 'string') {
      text += JSON.stringify(v.length > maxLength ? v.slice(0, maxLength) : v);
    } else if (v === null || typeof v !== 'object') {
      text += String(v);
    } else if (depth >= MAX_DEPTH) {
      text += Array.isArray(v) ? '[...]' : '{...}';
    } else if (Array.isArray(v)) {
      text += '[';
      for (let i = 0; i < v.length && !full(); i++) {
        if (i > 0) text += ',';
        walk(v[i], depth + 1);
      }
      text += ']';
    } else {
      text += '{';
      let first = true;
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        if (full()) break;
        text += `${first ? '' : ','}${JSON.stringify(key.length > maxLength ? key.slice(0, maxLength) : key)}:`;
        first = false;
        walk((v as Record<string, unknown>)[key], depth + 1);
      }
      text += '}';
    }
  };
  walk(value, 0);
  return text.length > maxLength ? `${text.slice(0, maxLength - 3)}...` : text;
}

/** Deeper levels print as `[...]` / `{...}`: a message has no room for them anyway. */
const MAX_DEPTH = 4;

/**
 * The message of a `JSON.parse` failure on one line: V8 quotes the text around the error,
 * newlines included, and a message is one paragraph.
 */
export function jsonErrorDetail(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}
