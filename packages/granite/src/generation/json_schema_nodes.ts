/**
 * Compiles a JSON schema into a graph of {@link SchemaNode}s: each node is a union of concrete
 * alternatives (an object shape, an array shape, a string, a number, a set of literal texts) that
 * the character automaton in `json_schema_automaton.ts` walks. `$ref` (local), `allOf`, `anyOf`
 * and `oneOf` are resolved here, so the automaton only ever sees unions of concrete shapes.
 *
 * Nothing that would change validity is ignored: an unsupported or unknown keyword throws a
 * {@link JsonSchemaError} naming it and its JSON pointer.
 */
import { CharTrie } from './char_trie';
import { JsonSchemaError, pointerJoin } from './json_schema_error';

/** A JSON schema: an object or a boolean (`true` = any value, `false` = no value). */
export type JsonSchema = boolean | { readonly [keyword: string]: unknown };

/** A union of concrete alternatives; a node with no alternatives admits no value. */
export interface SchemaNode {
  alts: Alt[];
  /** Some finite value matches (computed after compilation; unproductive alternatives are dropped). */
  productive: boolean;
  /** False while the node's own schema is still being compiled (recursive `$ref`). */
  complete: boolean;
}

export type Alt = ObjectAlt | ArrayAlt | StringAlt | NumberAlt | LiteralAlt;

/** During compilation only: "the alternatives of that node" (a `$ref` or `anyOf` member), flattened afterwards. */
interface NodeAlt {
  readonly kind: 'node';
  readonly node: SchemaNode;
}
type AnyAlt = Alt | NodeAlt;

export interface ObjectAlt {
  readonly kind: 'object';
  /** Declared property names (`properties`, then `required` names not declared there). */
  readonly names: readonly string[];
  readonly nodes: readonly SchemaNode[];
  readonly index: ReadonlyMap<string, number>;
  /** 1 for each required name. */
  readonly required: Uint8Array;
  readonly nRequired: number;
  /** Schema of undeclared properties; null when none may appear. */
  additional: SchemaNode | null;
  /** Trie over `names`. */
  readonly keys: CharTrie;
  /** 1 for each declared name whose value schema admits a value. */
  allowed: Uint8Array;
  nAllowed: number;
}

export interface ArrayAlt {
  readonly kind: 'array';
  readonly prefix: readonly SchemaNode[];
  readonly items: SchemaNode;
  readonly minItems: number;
  readonly maxItems: number;
  /** The most items the array can hold: `maxItems`, or fewer where an item schema admits nothing. */
  limit: number;
}

export interface StringAlt {
  readonly kind: 'string';
  readonly minLength: number;
  readonly maxLength: number;
  /** When set, the decoded string must be one of these (an `enum`/`const`). */
  readonly values: CharTrie | null;
}

export interface NumberAlt {
  readonly kind: 'number';
  /** Only `-?(0|[1-9][0-9]*)` is produced for `integer`. */
  readonly integer: boolean;
}

/** `true`, `false`, `null` and enum/const numbers, matched as their canonical JSON text. */
export interface LiteralAlt {
  readonly kind: 'literal';
  readonly texts: CharTrie;
}

/** Keywords that never affect validity. */
const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  '$anchor',
  'deprecated',
  'readOnly',
  'writeOnly',
  'contentEncoding',
  'contentMediaType',
  'contentSchema',
  '$defs',
  'definitions',
]);

/** Standard keywords that change validity but are not enforced. */
const UNSUPPORTED = new Set([
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'patternProperties',
  'propertyNames',
  'minProperties',
  'maxProperties',
  'dependencies',
  'dependentRequired',
  'dependentSchemas',
  'if',
  'then',
  'else',
  'not',
  'contains',
  'minContains',
  'maxContains',
  'uniqueItems',
  'unevaluatedProperties',
  'unevaluatedItems',
  '$dynamicRef',
  '$dynamicAnchor',
  '$recursiveRef',
  '$recursiveAnchor',
  '$vocabulary',
]);

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPES)[number];

type Raw = { [keyword: string]: unknown };

const isObject = (x: unknown): x is Raw => typeof x === 'object' && x !== null && !Array.isArray(x);
const isValidationKey = (key: string): boolean => !ANNOTATIONS.has(key) && !key.startsWith('x-');

/** Deep equality of JSON values (object key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return a === b;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** Length in code points, as JSON Schema counts it. */
export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const p = s.charCodeAt(i - 1);
      if (p >= 0xd800 && p <= 0xdbff) continue;
    }
    n++;
  }
  return n;
}

/** Canonical text of a number/boolean/null (what the automaton accepts for it in an enum). */
const canonical = (v: unknown): string => JSON.stringify(v);

const isNonNegativeInteger = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

function isJsonValue(v: unknown, depth = 0): boolean {
  if (depth > 1000) return false;
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isJsonValue(x, depth + 1));
  if (isObject(v)) return Object.values(v).every((x) => isJsonValue(x, depth + 1));
  return false;
}

/** Resolves a local `$ref` (`#`, `#/$defs/x`, `#/definitions/x`, any local JSON pointer). */
function resolveRef(root: JsonSchema, ref: string, path: string): { target: JsonSchema; pointer: string } {
  if (!ref.startsWith('#')) {
    throw new JsonSchemaError('$ref', path, `only local references ("#/...") are supported, got ${JSON.stringify(ref)}`);
  }
  let fragment: string;
  try {
    fragment = decodeURIComponent(ref.slice(1));
  } catch {
    throw new JsonSchemaError('$ref', path, `malformed reference ${JSON.stringify(ref)}`);
  }
  if (fragment !== '' && !fragment.startsWith('/')) {
    throw new JsonSchemaError('$ref', path, `anchor references are not supported, got ${JSON.stringify(ref)}`);
  }
  let target: unknown = root;
  const tokens = fragment === '' ? [] : fragment.slice(1).split('/');
  for (const raw of tokens) {
    const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(target) && /^(0|[1-9][0-9]*)$/.test(token) && Number(token) < target.length) {
      target = target[Number(token)];
    } else if (isObject(target) && Object.hasOwn(target, token)) {
      target = target[token];
    } else {
      throw new JsonSchemaError('$ref', path, `reference ${JSON.stringify(ref)} does not resolve`);
    }
  }
  if (typeof target !== 'boolean' && !isObject(target)) {
    throw new JsonSchemaError('$ref', path, `reference ${JSON.stringify(ref)} is not a schema`);
  }
  return { target, pointer: ref };
}

/**
 * Checks every keyword reachable from `schema` (following `$ref`s on use; unused `$defs` are not
 * checked). Throws {@link JsonSchemaError} for unsupported, unknown or malformed keywords.
 */
function checkSchema(root: JsonSchema, schema: unknown, path: string, seen: Set<unknown>): void {
  if (typeof schema === 'boolean') return;
  if (!isObject(schema)) throw new JsonSchemaError('', path, 'a schema must be an object or a boolean');
  const fail = (keyword: string, problem: string): never => {
    throw new JsonSchemaError(keyword, path, problem);
  };
  const sub = (value: unknown, ...tokens: (string | number)[]): void =>
    checkSchema(
      root,
      value,
      tokens.reduce<string>((p, t) => pointerJoin(p, t), path),
      seen,
    );
  const schemaArray = (keyword: string, value: unknown): void => {
    if (!Array.isArray(value) || value.length === 0) fail(keyword, 'expected a non-empty array of schemas');
    (value as unknown[]).forEach((s, i) => sub(s, keyword, i));
  };
  for (const [keyword, value] of Object.entries(schema)) {
    if (!isValidationKey(keyword)) {
      if ((keyword === '$defs' || keyword === 'definitions') && !isObject(value)) fail(keyword, 'expected an object');
      continue;
    }
    switch (keyword) {
      case 'type': {
        const list = Array.isArray(value) ? value : [value];
        if (list.length === 0 || !list.every((t) => (TYPES as readonly unknown[]).includes(t))) {
          fail(keyword, `expected one of ${TYPES.join(', ')} or an array of them, got ${JSON.stringify(value)}`);
        }
        if (new Set(list).size !== list.length) fail(keyword, 'type names must be unique');
        break;
      }
      case 'properties':
        if (!isObject(value)) fail(keyword, 'expected an object of schemas');
        for (const [name, s] of Object.entries(value as Raw)) sub(s, keyword, name);
        break;
      case 'required':
        if (!Array.isArray(value) || !value.every((n) => typeof n === 'string')) fail(keyword, 'expected an array of strings');
        break;
      case 'additionalProperties':
      case 'additionalItems':
        sub(value, keyword);
        break;
      case 'items':
        if (Array.isArray(value)) {
          if ('prefixItems' in schema) fail(keyword, 'array-form "items" cannot be combined with "prefixItems"');
          value.forEach((s, i) => sub(s, keyword, i));
        } else sub(value, keyword);
        break;
      case 'prefixItems':
        if (!Array.isArray(value)) fail(keyword, 'expected an array of schemas');
        (value as unknown[]).forEach((s, i) => sub(s, keyword, i));
        break;
      case 'enum':
        if (!Array.isArray(value) || !isJsonValue(value)) fail(keyword, 'expected an array of JSON values');
        break;
      case 'const':
        if (!isJsonValue(value)) fail(keyword, 'expected a JSON value');
        break;
      case 'minItems':
      case 'maxItems':
      case 'minLength':
      case 'maxLength':
        if (!isNonNegativeInteger(value)) fail(keyword, `expected a non-negative integer, got ${JSON.stringify(value)}`);
        break;
      case 'anyOf':
      case 'oneOf':
      case 'allOf':
        schemaArray(keyword, value);
        break;
      case '$ref': {
        if (typeof value !== 'string') fail(keyword, 'expected a string');
        const { target, pointer } = resolveRef(root, value as string, path);
        if (!seen.has(target)) {
          seen.add(target);
          checkSchema(root, target, pointer, seen);
        }
        break;
      }
      default:
        // No-op values of unsupported keywords are harmless.
        if (keyword === 'uniqueItems' && value === false) break;
        if ((keyword === 'exclusiveMinimum' || keyword === 'exclusiveMaximum') && value === false) break;
        if (UNSUPPORTED.has(keyword)) fail(keyword, 'is not supported by constrained decoding');
        fail(keyword, 'is not a known JSON schema keyword (refusing rather than ignoring it)');
    }
  }
}

const both = (x: unknown, y: unknown): unknown => {
  if (x === undefined || x === true) return y;
  if (y === undefined || y === true) return x;
  if (x === false || y === false) return false;
  return { allOf: [x, y] };
};

const crossAnyOf = (a: unknown[], b: unknown[]): unknown[] => a.flatMap((x) => b.map((y) => ({ allOf: [x, y] })));

const MAX_DEPTH = 256;

class Compiler {
  readonly nodes: SchemaNode[] = [];
  private readonly memo = new Map<string, SchemaNode>();
  private anyNode: SchemaNode | undefined;
  private readonly neverNode: SchemaNode;
  private depth = 0;
  /** Reference targets being inlined by `expand` (a cycle there never reaches a property or item). */
  private readonly expanding = new Set<unknown>();

  constructor(private readonly root: JsonSchema) {
    this.neverNode = this.node([]);
  }

  private node(alts: Alt[]): SchemaNode {
    const node: SchemaNode = { alts, productive: false, complete: true };
    this.nodes.push(node);
    return node;
  }

  /** Any JSON value. */
  private any(): SchemaNode {
    if (this.anyNode) return this.anyNode;
    const node = this.node([]);
    this.anyNode = node;
    node.alts = [
      objectAlt([], [], new Set(), node),
      { kind: 'array', prefix: [], items: node, minItems: 0, maxItems: Infinity, limit: Infinity },
      { kind: 'string', minLength: 0, maxLength: Infinity, values: null },
      { kind: 'number', integer: false },
      { kind: 'literal', texts: new CharTrie(['true', 'false', 'null']) },
    ];
    return node;
  }

  /**
   * The node of a schema. Nodes are shared between structurally equal schemas (the same JSON text:
   * `$ref`s always resolve against the root), which is what makes recursive schemas finite, also
   * when the recursion goes through `allOf` or keywords next to `$ref`/`anyOf`.
   */
  compile(schema: unknown): SchemaNode {
    if (schema === undefined || schema === true) return this.any();
    if (schema === false) return this.neverNode;
    const key = JSON.stringify(schema);
    const known = this.memo.get(key);
    if (known) return known;
    if (++this.depth > MAX_DEPTH) {
      throw new JsonSchemaError('', '#', `schema nesting deeper than ${MAX_DEPTH}`);
    }
    try {
      const node = this.node([]);
      node.complete = false;
      this.memo.set(key, node);
      node.alts = this.compileAlts(schema as Raw);
      node.complete = true;
      return node;
    } finally {
      this.depth--;
    }
  }

  private compileAlts(s: Raw): Alt[] {
    const keys = Object.keys(s).filter(isValidationKey);
    if (keys.length === 1 && keys[0] === '$ref') return [nodeAlt(this.compile(resolveRef(this.root, s.$ref as string, '#').target))];
    const flat = this.expand(s);
    if (flat.anyOf) {
      const { anyOf, ...rest } = flat;
      const plain = Object.keys(rest).length === 0;
      return (anyOf as unknown[]).map((alt) => nodeAlt(this.compile(plain ? alt : { allOf: [rest, alt] })));
    }
    return this.compileFlat(flat);
  }

  /** The schema without `$ref`, `allOf`, `oneOf` (made `anyOf`), annotations; `items` arrays made `prefixItems`. */
  private expand(schema: unknown): Raw {
    if (schema === true || schema === undefined) return {};
    if (schema === false) return { type: [] };
    if (++this.depth > MAX_DEPTH) {
      throw new JsonSchemaError('', '#', `schema nesting deeper than ${MAX_DEPTH}`);
    }
    try {
      const s = schema as Raw;
      let out: Raw = {};
      for (const [k, v] of Object.entries(s)) if (isValidationKey(k) && k !== '$ref' && k !== 'allOf' && k !== 'oneOf') out[k] = v;
      if (Array.isArray(out.items)) {
        out.prefixItems = out.items;
        if ('additionalItems' in out) out.items = out.additionalItems;
        else delete out.items;
      }
      delete out.additionalItems;
      if (typeof out.type === 'string') out.type = [out.type];
      if (s.oneOf) out.anyOf = out.anyOf ? crossAnyOf(out.anyOf as unknown[], s.oneOf as unknown[]) : s.oneOf;
      if (typeof s.$ref === 'string') {
        const { target } = resolveRef(this.root, s.$ref, '#');
        if (this.expanding.has(target)) {
          throw new JsonSchemaError('$ref', '#', `${JSON.stringify(s.$ref)} refers to itself without an enclosing property or item`);
        }
        this.expanding.add(target);
        try {
          out = merge(out, this.expand(target));
        } finally {
          this.expanding.delete(target);
        }
      }
      if (Array.isArray(s.allOf)) for (const sub of s.allOf) out = merge(out, this.expand(sub));
      return out;
    } finally {
      this.depth--;
    }
  }

  private compileFlat(s: Raw): Alt[] {
    const types = new Set<TypeName>((s.type as TypeName[] | undefined) ?? TYPES);
    const alts: Alt[] = [];
    if (types.has('object')) {
      const properties = (s.properties as Raw | undefined) ?? {};
      const names = Object.keys(properties);
      const additional = this.compile(s.additionalProperties);
      const nodes = names.map((name) => this.compile(properties[name]));
      for (const name of (s.required as string[] | undefined) ?? []) {
        if (!names.includes(name)) {
          names.push(name);
          nodes.push(additional);
        }
      }
      alts.push(objectAlt(names, nodes, new Set((s.required as string[] | undefined) ?? []), additional));
    }
    if (types.has('array')) {
      const prefix = ((s.prefixItems as unknown[] | undefined) ?? []).map((x) => this.compile(x));
      alts.push({
        kind: 'array',
        prefix,
        items: this.compile(s.items),
        minItems: (s.minItems as number | undefined) ?? 0,
        maxItems: (s.maxItems as number | undefined) ?? Infinity,
        limit: Infinity,
      });
    }
    if (types.has('string')) {
      alts.push({
        kind: 'string',
        minLength: (s.minLength as number | undefined) ?? 0,
        maxLength: (s.maxLength as number | undefined) ?? Infinity,
        values: null,
      });
    }
    if (types.has('number') || types.has('integer')) alts.push({ kind: 'number', integer: !types.has('number') });
    const literals = [...(types.has('boolean') ? ['true', 'false'] : []), ...(types.has('null') ? ['null'] : [])];
    if (literals.length > 0) alts.push({ kind: 'literal', texts: new CharTrie(literals) });

    if (!('enum' in s) && !('const' in s)) return alts;
    let values = 'enum' in s ? (s.enum as unknown[]) : [s.const];
    if ('enum' in s && 'const' in s) values = values.filter((v) => jsonEqual(v, s.const));
    const distinct: unknown[] = [];
    for (const v of values) if (matchesAlts(alts, v) && !distinct.some((d) => jsonEqual(d, v))) distinct.push(v);
    return this.valueAlts(distinct);
  }

  /** Alternatives matching exactly the given JSON values. */
  private valueAlts(values: readonly unknown[]): Alt[] {
    const alts: Alt[] = [];
    const strings = values.filter((v): v is string => typeof v === 'string');
    if (strings.length > 0) alts.push({ kind: 'string', minLength: 0, maxLength: Infinity, values: new CharTrie(strings) });
    const texts = values.filter((v) => v === null || typeof v === 'number' || typeof v === 'boolean').map(canonical);
    if (texts.length > 0) alts.push({ kind: 'literal', texts: new CharTrie(texts) });
    for (const v of values) {
      if (Array.isArray(v)) {
        alts.push({
          kind: 'array',
          prefix: v.map((x) => this.node(this.valueAlts([x]))),
          items: this.neverNode,
          minItems: v.length,
          maxItems: v.length,
          limit: Infinity,
        });
      } else if (isObject(v)) {
        const names = Object.keys(v);
        alts.push(
          objectAlt(
            names,
            names.map((k) => this.node(this.valueAlts([v[k]]))),
            new Set(names),
            this.neverNode,
          ),
        );
      }
    }
    return alts;
  }
}

const nodeAlt = (node: SchemaNode): Alt => ({ kind: 'node', node }) as NodeAlt as unknown as Alt;

/**
 * Replaces each node's `node` alternatives by the concrete alternatives reachable through them
 * (a cycle of references alone contributes nothing: the least fixpoint).
 */
function flattenNodes(nodes: readonly SchemaNode[]): void {
  const flat = nodes.map((node) => {
    const alts = node.alts as AnyAlt[];
    if (!alts.some((a) => a.kind === 'node')) return null;
    const out = new Set<Alt>();
    const seen = new Set<SchemaNode>([node]);
    const visit = (list: readonly AnyAlt[]): void => {
      for (const alt of list) {
        if (alt.kind !== 'node') out.add(alt);
        else if (!seen.has(alt.node)) {
          seen.add(alt.node);
          visit(alt.node.alts as AnyAlt[]);
        }
      }
    };
    visit(alts);
    return [...out];
  });
  nodes.forEach((node, i) => {
    const alts = flat[i];
    if (alts) node.alts = alts;
  });
}

function objectAlt(names: string[], nodes: SchemaNode[], required: ReadonlySet<string>, additional: SchemaNode): ObjectAlt {
  const flags = Uint8Array.from(names, (n) => (required.has(n) ? 1 : 0));
  return {
    kind: 'object',
    names,
    nodes,
    index: new Map(names.map((n, i) => [n, i])),
    required: flags,
    nRequired: flags.reduce((a, b) => a + b, 0),
    additional,
    keys: new CharTrie(names),
    allowed: new Uint8Array(names.length),
    nAllowed: 0,
  };
}

/** allOf of two expanded schemas, as one expanded schema (exact for the supported keywords). */
function merge(a: Raw, b: Raw): Raw {
  const out: Raw = { ...a, ...b };
  if (a.type && b.type) {
    const bt = b.type as TypeName[];
    const types: TypeName[] = [];
    for (const t of a.type as TypeName[]) {
      if (bt.includes(t)) types.push(t);
      else if (t === 'integer' && bt.includes('number')) types.push('integer');
      else if (t === 'number' && bt.includes('integer')) types.push('integer');
    }
    out.type = [...new Set(types)];
  }
  if (a.required && b.required) out.required = [...new Set([...(a.required as string[]), ...(b.required as string[])])];
  for (const k of ['minItems', 'minLength'] as const) if (k in a && k in b) out[k] = Math.max(a[k] as number, b[k] as number);
  for (const k of ['maxItems', 'maxLength'] as const) if (k in a && k in b) out[k] = Math.min(a[k] as number, b[k] as number);
  if (a.enum && b.enum) out.enum = (a.enum as unknown[]).filter((x) => (b.enum as unknown[]).some((y) => jsonEqual(x, y)));
  if ('const' in a && 'const' in b && !jsonEqual(a.const, b.const)) {
    delete out.const;
    out.enum = [];
  }
  if (a.anyOf && b.anyOf) out.anyOf = crossAnyOf(a.anyOf as unknown[], b.anyOf as unknown[]);
  const objectKeys = (s: Raw) => 'properties' in s || 'additionalProperties' in s;
  if (objectKeys(a) || objectKeys(b)) {
    const pa = (a.properties as Raw | undefined) ?? {};
    const pb = (b.properties as Raw | undefined) ?? {};
    const properties: Raw = Object.create(null) as Raw; // a property may be named "__proto__"
    for (const k of new Set([...Object.keys(pa), ...Object.keys(pb)])) {
      const x = Object.hasOwn(pa, k) ? pa[k] : a.additionalProperties;
      const y = Object.hasOwn(pb, k) ? pb[k] : b.additionalProperties;
      properties[k] = both(x, y) ?? true;
    }
    out.properties = properties;
    const additional = both(a.additionalProperties, b.additionalProperties);
    if (additional === undefined) delete out.additionalProperties;
    else out.additionalProperties = additional;
  }
  const arrayKeys = (s: Raw) => 'prefixItems' in s || 'items' in s;
  if (arrayKeys(a) || arrayKeys(b)) {
    const xa = (a.prefixItems as unknown[] | undefined) ?? [];
    const xb = (b.prefixItems as unknown[] | undefined) ?? [];
    const n = Math.max(xa.length, xb.length);
    const prefix: unknown[] = [];
    for (let i = 0; i < n; i++) prefix.push(both(i < xa.length ? xa[i] : a.items, i < xb.length ? xb[i] : b.items) ?? true);
    if (n > 0) out.prefixItems = prefix;
    else delete out.prefixItems;
    const items = both(a.items, b.items);
    if (items === undefined) delete out.items;
    else out.items = items;
  }
  return out;
}

function matchesNode(node: SchemaNode, v: unknown, depth = 0): boolean {
  if (!node.complete || depth > MAX_DEPTH) {
    throw new JsonSchemaError('enum', '#', 'enum/const combined with a recursive $ref is not supported');
  }
  return matchesAlts(node.alts, v, depth + 1);
}

/** Whether a JSON value matches one of the alternatives (used to filter enum/const values). */
function matchesAlts(alts: readonly Alt[], v: unknown, depth = 0): boolean {
  return (alts as AnyAlt[]).some((alt) => {
    switch (alt.kind) {
      case 'node':
        return matchesNode(alt.node, v, depth);
      case 'object': {
        if (!isObject(v)) return false;
        for (let i = 0; i < alt.names.length; i++) if (alt.required[i] && !Object.hasOwn(v, alt.names[i])) return false;
        return Object.entries(v).every(([k, x]) => {
          const i = alt.index.get(k);
          const node = i === undefined ? alt.additional : alt.nodes[i];
          return node !== null && matchesNode(node, x, depth);
        });
      }
      case 'array':
        if (!Array.isArray(v) || v.length < alt.minItems || v.length > alt.maxItems) return false;
        return v.every((x, i) => matchesNode(i < alt.prefix.length ? alt.prefix[i] : alt.items, x, depth));
      case 'string': {
        if (typeof v !== 'string') return false;
        const n = codePointLength(v);
        return n >= alt.minLength && n <= alt.maxLength && (alt.values === null || alt.values.words.includes(v));
      }
      case 'number':
        return typeof v === 'number' && (!alt.integer || Number.isInteger(v));
      case 'literal':
        return (v === null || typeof v === 'boolean' || typeof v === 'number') && alt.texts.words.includes(canonical(v));
    }
  });
}

function altProductive(alt: Alt): boolean {
  switch (alt.kind) {
    case 'object':
      return alt.nodes.every((n, i) => !alt.required[i] || n.productive);
    case 'array': {
      if (alt.minItems > alt.maxItems) return false;
      for (let i = 0; i < alt.minItems; i++) if (!(i < alt.prefix.length ? alt.prefix[i] : alt.items).productive) return false;
      return true;
    }
    case 'string':
      return alt.minLength <= alt.maxLength;
    case 'number':
    case 'literal':
      return true;
  }
}

function finalizeAlt(alt: Alt): void {
  if (alt.kind === 'object') {
    alt.allowed = Uint8Array.from(alt.nodes, (n) => (n.productive ? 1 : 0));
    alt.nAllowed = alt.allowed.reduce((a, b) => a + b, 0);
    if (alt.additional && !alt.additional.productive) alt.additional = null;
  } else if (alt.kind === 'array') {
    let limit = alt.maxItems;
    const first = alt.prefix.findIndex((n) => !n.productive);
    if (first >= 0) limit = Math.min(limit, first);
    else if (!alt.items.productive) limit = Math.min(limit, alt.prefix.length);
    alt.limit = limit;
  }
}

/**
 * Checks and compiles a schema into its root node. Every node of the result is productive or
 * never reachable (values that would need an unproductive schema are simply not offered).
 */
export function compileSchemaNodes(schema: JsonSchema): SchemaNode {
  checkSchema(schema, schema, '#', new Set([schema]));
  const compiler = new Compiler(schema);
  const root = compiler.compile(schema);
  flattenNodes(compiler.nodes);
  // Least fixpoint of "admits a finite value".
  for (let changed = true; changed; ) {
    changed = false;
    for (const node of compiler.nodes) {
      if (!node.productive && node.alts.some(altProductive)) {
        node.productive = true;
        changed = true;
      }
    }
  }
  const done = new Set<Alt>();
  for (const node of compiler.nodes) {
    node.alts = node.alts.filter(altProductive);
    for (const alt of node.alts) {
      if (!done.has(alt)) {
        done.add(alt);
        finalizeAlt(alt);
      }
    }
  }
  if (!root.productive) throw new JsonSchemaError('', '#', 'the schema admits no JSON value');
  return root;
}
