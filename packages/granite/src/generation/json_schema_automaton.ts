/**
 * An incremental, character-level JSON recogniser driven by a JSON schema: a pushdown automaton
 * whose states are immutable, so a state can be kept, shared and advanced along many branches
 * (which is what the vocabulary walk in `json_constraint.ts` does).
 *
 * A state is a set of threads (one per live `anyOf`/`oneOf` alternative, usually exactly one);
 * each thread is a persistent stack of frames, the frame below a value being the container's
 * state *after* that value, so finishing a value is just popping it.
 *
 * Every state the automaton returns can still be completed into a valid value: alternatives that
 * admit nothing are pruned at compile time, and strings constrained to a set (enums, property
 * names under `additionalProperties: false`) only accept prefixes of remaining candidates.
 *
 * What is produced is a subset of the JSON text a validator would accept, by design:
 * - at most `maxWhitespace` whitespace characters in a row between tokens, and none after the
 *   top-level value;
 * - `integer` values are written without fraction or exponent (`-?(0|[1-9][0-9]*)`);
 * - numbers, booleans and null inside `enum`/`const` are matched as their canonical
 *   `JSON.stringify` text (`1`, not `1.0`); strings there are compared after unescaping;
 * - each property at most once (JSON.parse would keep the last duplicate, validators differ).
 */
import type { CharTrie } from './char_trie';
import { compileSchemaNodes, type ArrayAlt, type JsonSchema, type ObjectAlt, type SchemaNode, type StringAlt } from './json_schema_nodes';

/** An automaton state. Opaque and immutable; compare with `===` only for identity. */
export interface JsonState {
  readonly __jsonState: never;
}

/** Options of {@link compileJsonSchema}. */
export interface JsonAutomatonOptions {
  /** Most whitespace characters allowed in a row between two tokens (default 4). */
  maxWhitespace?: number;
}

// Frame kinds.
const ROOT = 0;
const OBJ = 1;
const ARR = 2;
const STR = 3;
const NUM = 4;
const LIT = 5;

// Object phases: after '{', after ',', after a key, after ':', after a value.
const O_FIRST = 0;
const O_KEY = 1;
const O_COLON = 2;
const O_VALUE = 3;
const O_AFTER = 4;
// Array phases: after '[', after ',', after a value.
const A_FIRST = 0;
const A_VALUE = 1;
const A_AFTER = 2;
// Number sub-states.
const N_MINUS = 0;
const N_ZERO = 1;
const N_INT = 2;
const N_DOT = 3;
const N_FRAC = 4;
const N_E = 5;
const N_ESIGN = 6;
const N_EXP = 7;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;

// Globals cached in module scope: the hot paths below run per trie node, and global lookups are
// slow in some hosts (vm contexts such as jest's).
const isArray: (x: unknown) => x is unknown[] = Array.isArray;
const UNBOUNDED = Number.POSITIVE_INFINITY;
const fromCharCode = String.fromCharCode;

const isWs = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHigh = (u: number): boolean => u >= 0xd800 && u <= 0xdbff;
const isLow = (u: number): boolean => u >= 0xdc00 && u <= 0xdfff;
const hexValue = (c: number): number =>
  c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
/** Decoded unit of a one-character escape (`\n` → 10), or -1. */
const simpleEscape = (c: number): number => {
  switch (c) {
    case QUOTE:
    case BACKSLASH:
    case 0x2f:
      return c;
    case 0x62:
      return 0x08;
    case 0x66:
      return 0x0c;
    case 0x6e:
      return 0x0a;
    case 0x72:
      return 0x0d;
    case 0x74:
      return 0x09;
    default:
      return -1;
  }
};

class RootFrame {
  readonly k = ROOT;
  readonly p = null;
  constructor(
    readonly phase: number,
    readonly ws: number,
  ) {}
}

class ObjFrame {
  readonly k = OBJ;
  constructor(
    readonly p: Frame,
    readonly alt: ObjectAlt,
    readonly phase: number,
    readonly ws: number,
    /** Declared properties already present (null: none yet). */
    readonly used: Uint8Array | null,
    /** How many required properties are present. */
    readonly nReq: number,
    /** How many declared properties are present. */
    readonly nUsed: number,
    /** Undeclared property names already present. */
    readonly extra: readonly string[],
    /** Schema of the value after the current key. */
    readonly pending: SchemaNode | null,
  ) {}

  with(phase: number, ws: number, pending: SchemaNode | null): ObjFrame {
    return new ObjFrame(this.p, this.alt, phase, ws, this.used, this.nReq, this.nUsed, this.extra, pending);
  }
}

class ArrFrame {
  readonly k = ARR;
  constructor(
    readonly p: Frame,
    readonly alt: ArrayAlt,
    readonly phase: number,
    readonly ws: number,
    /** Items so far (including the one being read, below it on the stack). */
    readonly count: number,
  ) {}
}

class StrFrame {
  readonly k = STR;
  constructor(
    readonly p: Frame,
    /** The string value's schema (null for a property name). */
    readonly alt: StringAlt | null,
    /** The object whose property name this is (null for a value). */
    readonly key: ObjectAlt | null,
    /** 0: plain, 1: after '\', 2–5: after '\u' and (esc − 2) hex digits. */
    readonly esc: number,
    readonly hex: number,
    /** Code points so far (only counted under minLength/maxLength). */
    readonly len: number,
    /** 1 when the last decoded unit was a high surrogate (only tracked when counting). */
    readonly hi: number,
    /** Node in the candidate trie (enum values or property names), or -1 (no trie / left it). */
    readonly t: number,
    /** Decoded text so far (only for property names that may be undeclared). */
    readonly text: string | null,
  ) {}
}

class NumFrame {
  readonly k = NUM;
  constructor(
    readonly p: Frame,
    readonly integer: boolean,
    readonly sub: number,
  ) {}
}

class LitFrame {
  readonly k = LIT;
  constructor(
    readonly p: Frame,
    readonly trie: CharTrie,
    readonly t: number,
  ) {}
}

type Frame = RootFrame | ObjFrame | ArrFrame | StrFrame | NumFrame | LitFrame;
type Step = Frame | Frame[] | null;

const counting = (alt: StringAlt | null): alt is StringAlt => alt !== null && (alt.minLength > 0 || alt.maxLength !== UNBOUNDED);

function sameArrays<T>(a: ArrayLike<T> | null, b: ArrayLike<T> | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Structural equality of two stacks. */
function sameStack(a: Frame | null, b: Frame | null): boolean {
  while (a !== b) {
    if (a === null || b === null || a.k !== b.k) return false;
    switch (a.k) {
      case ROOT: {
        const y = b as RootFrame;
        if (a.phase !== y.phase || a.ws !== y.ws) return false;
        break;
      }
      case OBJ: {
        const y = b as ObjFrame;
        if (a.alt !== y.alt || a.phase !== y.phase || a.ws !== y.ws || a.nReq !== y.nReq || a.nUsed !== y.nUsed) return false;
        if (a.pending !== y.pending || !sameArrays(a.used, y.used) || !sameArrays(a.extra, y.extra)) return false;
        break;
      }
      case ARR: {
        const y = b as ArrFrame;
        if (a.alt !== y.alt || a.phase !== y.phase || a.ws !== y.ws || a.count !== y.count) return false;
        break;
      }
      case STR: {
        const y = b as StrFrame;
        if (a.alt !== y.alt || a.key !== y.key || a.esc !== y.esc || a.hex !== y.hex || a.len !== y.len) return false;
        if (a.hi !== y.hi || a.t !== y.t || a.text !== y.text) return false;
        break;
      }
      case NUM: {
        const y = b as NumFrame;
        if (a.integer !== y.integer || a.sub !== y.sub) return false;
        break;
      }
      case LIT: {
        const y = b as LitFrame;
        if (a.trie !== y.trie || a.t !== y.t) return false;
        break;
      }
    }
    a = a.p;
    b = b.p;
  }
  return true;
}

/** Adds a step result to a thread list, dropping duplicates. */
function collect(out: Frame[], r: Step): void {
  if (r === null) return;
  if (isArray(r)) {
    for (const f of r) collect(out, f);
    return;
  }
  for (const f of out) if (sameStack(f, r)) return;
  out.push(r);
}

/** A compiled schema: the initial state and the transition function. See the module comment. */
export class JsonAutomaton {
  /** The state before any character. */
  readonly initial: JsonState;
  readonly maxWhitespace: number;
  private readonly done = new RootFrame(1, 0);

  /** @internal Use {@link compileJsonSchema}. */
  constructor(
    private readonly root: SchemaNode,
    options: JsonAutomatonOptions = {},
  ) {
    const maxWhitespace = options.maxWhitespace ?? 4;
    if (!Number.isInteger(maxWhitespace) || maxWhitespace < 0) {
      throw new RangeError(`maxWhitespace: expected a non-negative integer, got ${maxWhitespace}`);
    }
    this.maxWhitespace = maxWhitespace;
    this.initial = new RootFrame(0, 0) as unknown as JsonState;
  }

  /** The state after `text` (each UTF-16 code unit in turn), or null if some character is not allowed. */
  advance(state: JsonState, text: string): JsonState | null {
    let s: JsonState | null = state;
    for (let i = 0; i < text.length && s !== null; i++) s = this.advanceCode(s, text.charCodeAt(i));
    return s;
  }

  /** The state after one UTF-16 code unit, or null if it is not allowed. */
  advanceCode(state: JsonState, code: number): JsonState | null {
    const s = state as unknown as Frame | Frame[];
    let r: Step;
    if (isArray(s)) {
      const out: Frame[] = [];
      for (const f of s) collect(out, this.step(f, code));
      r = out;
    } else {
      r = this.step(s, code);
      if (isArray(r)) {
        const out: Frame[] = [];
        collect(out, r);
        r = out;
      }
    }
    if (isArray(r)) r = r.length === 0 ? null : r.length === 1 ? r[0] : r;
    return r as unknown as JsonState | null;
  }

  /** Whether the text so far is a complete valid value (the output may end here). */
  canEnd(state: JsonState): boolean {
    const s = state as unknown as Frame | Frame[];
    return isArray(s) ? s.some((f) => this.accepting(f)) : this.accepting(s);
  }

  /** Whether the value is finished and no further character is possible (only the end may follow). */
  isComplete(state: JsonState): boolean {
    const s = state as unknown as Frame | Frame[];
    return isArray(s) ? s.every((f) => f === this.done) : s === this.done;
  }

  /** Whether `text` as a whole is accepted. */
  accepts(text: string): boolean {
    const s = this.advance(this.initial, text);
    return s !== null && this.canEnd(s);
  }

  private accepting(f: Frame | null): boolean {
    for (;;) {
      if (f === null) return false;
      if (f.k === ROOT) return f.phase === 1;
      if (f.k === NUM) {
        if (f.sub !== N_ZERO && f.sub !== N_INT && f.sub !== N_FRAC && f.sub !== N_EXP) return false;
      } else if (f.k === LIT) {
        if (f.trie.terminal(f.t) < 0) return false;
      } else return false;
      f = f.p;
    }
  }

  private step(f: Frame, c: number): Step {
    switch (f.k) {
      case ROOT:
        if (f.phase !== 0) return null;
        if (isWs(c)) return f.ws < this.maxWhitespace ? new RootFrame(0, f.ws + 1) : null;
        return this.startValue(this.root, c, this.done);
      case OBJ:
        return this.stepObject(f, c);
      case ARR:
        return this.stepArray(f, c);
      case STR:
        return this.stepString(f, c);
      case NUM:
        return this.stepNumber(f, c);
      case LIT: {
        const t = f.trie.child(f.t, c);
        if (t >= 0) return f.trie.terminal(t) >= 0 && !f.trie.hasChildren(t) ? f.p : new LitFrame(f.p, f.trie, t);
        return f.trie.terminal(f.t) >= 0 ? this.step(f.p, c) : null;
      }
    }
  }

  /** Threads starting a value of `node` with character `c`, continuing with `cont` once it ends. */
  private startValue(node: SchemaNode, c: number, cont: Frame): Step {
    let one: Frame | null = null;
    let many: Frame[] | null = null;
    for (const alt of node.alts) {
      let f: Frame | null = null;
      switch (alt.kind) {
        case 'object':
          if (c === LBRACE) f = new ObjFrame(cont, alt, O_FIRST, 0, null, 0, 0, [], null);
          break;
        case 'array':
          if (c === LBRACKET) f = new ArrFrame(cont, alt, A_FIRST, 0, 0);
          break;
        case 'string':
          if (c === QUOTE) f = new StrFrame(cont, alt, null, 0, 0, 0, 0, alt.values ? 0 : -1, null);
          break;
        case 'number':
          if (c === MINUS) f = new NumFrame(cont, alt.integer, N_MINUS);
          else if (c === 0x30) f = new NumFrame(cont, alt.integer, N_ZERO);
          else if (isDigit(c)) f = new NumFrame(cont, alt.integer, N_INT);
          break;
        case 'literal': {
          const t = alt.texts.child(0, c);
          if (t >= 0) f = alt.texts.terminal(t) >= 0 && !alt.texts.hasChildren(t) ? cont : new LitFrame(cont, alt.texts, t);
          break;
        }
      }
      if (f === null) continue;
      if (one === null) one = f;
      else (many ??= [one]).push(f);
    }
    return many ?? one;
  }

  private canAddKey(f: ObjFrame): boolean {
    return f.alt.additional !== null || f.nUsed < f.alt.nAllowed;
  }

  private stepObject(f: ObjFrame, c: number): Step {
    if (isWs(c)) return f.ws < this.maxWhitespace ? f.with(f.phase, f.ws + 1, f.pending) : null;
    const alt = f.alt;
    switch (f.phase) {
      case O_FIRST:
      case O_KEY:
        if (c === QUOTE) {
          if (!this.canAddKey(f)) return null;
          return new StrFrame(f, null, alt, 0, 0, 0, 0, 0, alt.additional !== null ? '' : null);
        }
        if (c === RBRACE && f.phase === O_FIRST && f.nReq === alt.nRequired) return f.p;
        return null;
      case O_COLON:
        return c === COLON ? f.with(O_VALUE, 0, f.pending) : null;
      case O_VALUE:
        return this.startValue(f.pending!, c, f.with(O_AFTER, 0, null));
      default:
        if (c === COMMA) return this.canAddKey(f) ? f.with(O_KEY, 0, null) : null;
        if (c === RBRACE) return f.nReq === alt.nRequired ? f.p : null;
        return null;
    }
  }

  private stepArray(f: ArrFrame, c: number): Step {
    const alt = f.alt;
    if (isWs(c)) return f.ws < this.maxWhitespace ? new ArrFrame(f.p, alt, f.phase, f.ws + 1, f.count) : null;
    if (f.phase === A_AFTER) {
      if (c === COMMA) return f.count < alt.limit ? new ArrFrame(f.p, alt, A_VALUE, 0, f.count) : null;
      if (c === RBRACKET) return f.count >= alt.minItems ? f.p : null;
      return null;
    }
    if (f.phase === A_FIRST) {
      if (c === RBRACKET) return alt.minItems === 0 ? f.p : null;
      if (alt.limit === 0) return null;
    }
    const item = f.count < alt.prefix.length ? alt.prefix[f.count] : alt.items;
    return this.startValue(item, c, new ArrFrame(f.p, alt, A_AFTER, 0, f.count + 1));
  }

  private stepNumber(f: NumFrame, c: number): Step {
    const next = (sub: number): NumFrame => new NumFrame(f.p, f.integer, sub);
    switch (f.sub) {
      case N_MINUS:
        return c === 0x30 ? next(N_ZERO) : isDigit(c) ? next(N_INT) : null;
      case N_ZERO:
      case N_INT:
        if (f.sub === N_INT && isDigit(c)) return f;
        if (!f.integer && c === DOT) return next(N_DOT);
        if (!f.integer && (c === 0x65 || c === 0x45)) return next(N_E);
        return this.step(f.p, c);
      case N_DOT:
        return isDigit(c) ? next(N_FRAC) : null;
      case N_FRAC:
        if (isDigit(c)) return f;
        if (c === 0x65 || c === 0x45) return next(N_E);
        return this.step(f.p, c);
      case N_E:
        return c === PLUS || c === MINUS ? next(N_ESIGN) : isDigit(c) ? next(N_EXP) : null;
      case N_ESIGN:
        return isDigit(c) ? next(N_EXP) : null;
      default:
        return isDigit(c) ? f : this.step(f.p, c);
    }
  }

  /** Whether a property name may continue through trie node `t` (some allowed, unused name lies below). */
  private liveKey(f: StrFrame, t: number): boolean {
    const alt = f.key!;
    const used = (f.p as ObjFrame).used;
    for (const i of alt.keys.wordsUnder(t)) if (alt.allowed[i] && !used?.[i]) return true;
    return false;
  }

  private trieOf(f: StrFrame): CharTrie {
    return f.key !== null ? f.key.keys : f.alt!.values!;
  }

  /**
   * Whether some escape `\uXXXX` whose leading digits are `acc` (with `remaining` digits to come)
   * can be decoded here without leaving the language.
   */
  private escapeFeasible(f: StrFrame, acc: number, remaining: number): boolean {
    const lo = acc * 16 ** remaining;
    const hi = lo + 16 ** remaining - 1;
    if (counting(f.alt) && f.len >= f.alt.maxLength) {
      // Full: only a low surrogate completing a pair (it does not count) may follow.
      if (!f.hi || hi < 0xdc00 || lo > 0xdfff) return false;
    }
    if (f.t < 0) return true;
    const trie = this.trieOf(f);
    const strict = f.key === null || f.key.additional === null;
    if (!strict) return true;
    for (const [code, child] of trie.edges(f.t)) {
      if (code >= lo && code <= hi && (f.key === null || this.liveKey(f, child))) return true;
    }
    return false;
  }

  private stepString(f: StrFrame, c: number): Step {
    switch (f.esc) {
      case 0:
        if (c === QUOTE) return this.closeString(f);
        if (c === BACKSLASH) {
          return this.escapeFeasible(f, 0, 4) ? new StrFrame(f.p, f.alt, f.key, 1, 0, f.len, f.hi, f.t, f.text) : null;
        }
        if (c < 0x20) return null;
        return this.consume(f, c);
      case 1: {
        if (c === 0x75) return new StrFrame(f.p, f.alt, f.key, 2, 0, f.len, f.hi, f.t, f.text);
        const u = simpleEscape(c);
        return u < 0 ? null : this.consume(f, u);
      }
      default: {
        const d = hexValue(c);
        if (d < 0) return null;
        const acc = f.hex * 16 + d;
        const remaining = 5 - f.esc;
        if (remaining === 0) return this.consume(f, acc);
        if (!this.escapeFeasible(f, acc, remaining)) return null;
        return new StrFrame(f.p, f.alt, f.key, f.esc + 1, acc, f.len, f.hi, f.t, f.text);
      }
    }
  }

  /** Appends one decoded code unit. */
  private consume(f: StrFrame, u: number): Frame | null {
    let len = f.len;
    let hi = f.hi;
    if (counting(f.alt)) {
      if (!(hi && isLow(u))) {
        if (len >= f.alt.maxLength) return null;
        len++;
      }
      hi = isHigh(u) ? 1 : 0;
    }
    let t = f.t;
    if (t >= 0) {
      t = this.trieOf(f).child(t, u);
      if (f.key !== null) {
        if (f.key.additional === null && (t < 0 || !this.liveKey(f, t))) return null;
      } else if (t < 0) return null;
    }
    const text = f.text === null ? null : f.text + fromCharCode(u);
    if (f.esc === 0 && len === f.len && hi === f.hi && t === f.t && text === null) return f;
    return new StrFrame(f.p, f.alt, f.key, 0, 0, len, hi, t, text);
  }

  private closeString(f: StrFrame): Frame | null {
    if (f.key === null) {
      const alt = f.alt!;
      if (counting(alt) && f.len < alt.minLength) return null;
      if (alt.values !== null && alt.values.terminal(f.t) < 0) return null;
      return f.p;
    }
    const alt = f.key;
    const obj = f.p as ObjFrame;
    const index = f.t >= 0 ? alt.keys.terminal(f.t) : -1;
    if (index >= 0) {
      if (!alt.allowed[index] || obj.used?.[index]) return null;
      const used = obj.used === null ? new Uint8Array(alt.names.length) : obj.used.slice();
      used[index] = 1;
      return new ObjFrame(obj.p, alt, O_COLON, 0, used, obj.nReq + alt.required[index], obj.nUsed + 1, obj.extra, alt.nodes[index]);
    }
    if (alt.additional === null || f.text === null || obj.extra.includes(f.text)) return null;
    return new ObjFrame(obj.p, alt, O_COLON, 0, obj.used, obj.nReq, obj.nUsed, [...obj.extra, f.text], alt.additional);
  }
}

/**
 * Compiles a JSON schema into a {@link JsonAutomaton}. `null` or `true` accept any JSON value;
 * for OpenAI's `json_object` mode pass `{ type: 'object' }`.
 *
 * @throws JsonSchemaError for a keyword that would change validity but is not supported (naming
 *   the keyword and its JSON pointer), an unknown keyword, a bad `$ref`, or a schema admitting no value.
 * @example
 * const json = compileJsonSchema({ type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] });
 * json.accepts('{"n": 12}'); // true
 */
export function compileJsonSchema(schema: JsonSchema | null, options: JsonAutomatonOptions = {}): JsonAutomaton {
  return new JsonAutomaton(compileSchemaNodes(schema ?? true), options);
}
