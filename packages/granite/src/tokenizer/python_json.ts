/**
 * Python's `json.dumps`, as transformers' chat-template `tojson` filter calls it
 * (`ensure_ascii=False`, no key sorting, no HTML escaping by default), applied to
 * `@huggingface/jinja` runtime values.
 *
 * Why not the library's own `tojson`: @huggingface/jinja 0.5.11 prints floats with JavaScript
 * rules (`1.0 | tojson` → `1`, `1e-7` instead of Python's `1e-07`), sorts keys with
 * `localeCompare` instead of by code point, and treats `indent=0` as no indent. Runtime values keep
 * the integer/float distinction of template literals (`FloatValue`), which is what lets us print
 * `1.0`; plain JavaScript numbers passed in as data have no such distinction (`JSON.parse('1.0')`
 * is `1`), so an integral JS number always prints as an integer.
 */

/** The part of a @huggingface/jinja runtime value we read: its `type` tag and payload. */
export interface JinjaRuntimeValue {
  readonly type: string;
  readonly value: unknown;
}

/** Keyword arguments of Python's `json.dumps` that `tojson` forwards. */
export interface PythonJsonOptions {
  indent?: number | string | null;
  ensureAscii?: boolean;
  separators?: readonly [string, string] | null;
  sortKeys?: boolean;
}

/**
 * Python `repr(float)`: shortest round-trip digits (JavaScript finds the same digits), fixed
 * notation for decimal exponents −4 ≤ e < 16, else `d.ddde±XX` with at least two exponent digits.
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  if (exp >= -4 && exp < 16) {
    const fixed = fixedFromExponential(mantissa, exp);
    return fixed.includes('.') ? fixed : `${fixed}.0`;
  }
  const sign = exp < 0 ? '-' : '+';
  return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
}

// `toFixed` would round to a fixed count of digits; we want exactly the shortest digits.
function fixedFromExponential(mantissa: string, exp: number): string {
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace('-', '').replace('.', '');
  let out: string;
  if (exp < 0) {
    out = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else if (digits.length > exp + 1) {
    out = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  } else {
    out = digits + '0'.repeat(exp + 1 - digits.length);
  }
  return negative ? `-${out}` : out;
}

function pythonIntRepr(x: number): string {
  if (!Number.isFinite(x)) return pythonFloatRepr(x);
  // Python ints have no exponent form: 1e21 prints all its digits.
  return Number.isSafeInteger(x) ? String(x) : BigInt(x).toString();
}

function stringLiteral(s: string, ensureAscii: boolean): string {
  const json = JSON.stringify(s);
  if (!ensureAscii) return json;
  // Python escapes every code unit above 0x7e as \uXXXX (surrogate pairs as two escapes).
  return json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// Python sorts str keys by code point; JavaScript's `<` compares UTF-16 code units.
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return (ca.done ? 0 : 1) - (cb.done ? 0 : 1);
    const d = (ca.value.codePointAt(0) ?? 0) - (cb.value.codePointAt(0) ?? 0);
    if (d !== 0) return d;
  }
}

/**
 * Serialises a jinja runtime value like Python's `json.dumps(value, ensure_ascii=…, indent=…,
 * separators=…, sort_keys=…)`.
 *
 * @example
 * pythonJsonDumps({ type: 'FloatValue', value: 1 }) // '1.0'
 */
export function pythonJsonDumps(value: JinjaRuntimeValue, options: PythonJsonOptions = {}): string {
  const ensureAscii = options.ensureAscii ?? false;
  const sortKeys = options.sortKeys ?? false;
  const indent =
    options.indent === null || options.indent === undefined
      ? null
      : typeof options.indent === 'number'
        ? ' '.repeat(options.indent)
        : options.indent;
  const [itemSep, keySep] = options.separators ?? (indent === null ? [', ', ': '] : [',', ': ']);

  const dump = (v: JinjaRuntimeValue, depth: number): string => {
    switch (v.type) {
      case 'NullValue':
      case 'UndefinedValue':
        return 'null';
      case 'BooleanValue':
        return v.value ? 'true' : 'false';
      case 'IntegerValue':
        return pythonIntRepr(v.value as number);
      case 'FloatValue':
        return pythonFloatRepr(v.value as number);
      case 'StringValue':
        return stringLiteral(v.value as string, ensureAscii);
      case 'ArrayValue':
      case 'TupleValue': {
        const items = v.value as JinjaRuntimeValue[];
        if (items.length === 0) return '[]';
        return wrap(
          '[',
          ']',
          items.map((x) => dump(x, depth + 1)),
          depth,
        );
      }
      case 'ObjectValue':
      case 'NamespaceValue': {
        let entries = Array.from((v.value as Map<string, JinjaRuntimeValue>).entries());
        if (entries.length === 0) return '{}';
        if (sortKeys) entries = entries.sort(([a], [b]) => compareCodePoints(a, b));
        return wrap(
          '{',
          '}',
          entries.map(([k, x]) => `${stringLiteral(k, ensureAscii)}${keySep}${dump(x, depth + 1)}`),
          depth,
        );
      }
      default:
        throw new TypeError(`Object of type ${v.type} is not JSON serializable`);
    }
  };

  const wrap = (open: string, close: string, parts: string[], depth: number): string => {
    if (indent === null) return `${open}${parts.join(itemSep)}${close}`;
    const inner = `\n${indent.repeat(depth + 1)}`;
    return `${open}${inner}${parts.join(itemSep + inner)}\n${indent.repeat(depth)}${close}`;
  };

  return dump(value, 0);
}
