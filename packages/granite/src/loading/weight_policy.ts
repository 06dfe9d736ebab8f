import { canPackRows, isWeightDtype, previewJson, WEIGHT_DTYPES, type WeightDtype } from '@graniteflow/core';

/**
 * Which weights a `dtype` packs (checkpoint names; model guide: Checkpoint format). Every matrix a
 * token is multiplied by: the Mamba in/out projections, attention q/k/v/o, the shared (or dense)
 * MLP, the routed experts, the embedding and the LM head (the tied embedding serves as both).
 * Everything else stays float32: the router (E × H: small, and top-k picks experts from its raw
 * logits, so rounding it changes which experts run), every RMSNorm and the gated norm, A_log, D,
 * dt_bias (the SSM's decay and skip terms), the conv1d weight and bias (4 taps a channel) and every
 * bias. llama.cpp's quantizer draws the same line: it skips `*_norm.weight`, `ffn_gate_inp` (the
 * router), `ssm_conv1d` and every 1-D tensor (`ssm_a`, `ssm_d`, `ssm_dt.bias`).
 *
 * Names as in the checkpoint, with `*` for the layer index.
 *
 * One difference: llama.cpp's Q4_0 files hold the output matrix (here the tied embedding) in Q6_K,
 * which graniteflow does not have; `q4_0` packs it in q4_0, the largest error of the mix. Keep it at
 * q8_0 with `dtypeOverrides: { 'model.embed_tokens.weight': 'q8_0' }` (and `lm_head.weight` when untied).
 */
export const PACKED_WEIGHTS: readonly string[] = [
  'model.embed_tokens.weight',
  'lm_head.weight',
  'model.layers.*.mamba.in_proj.weight',
  'model.layers.*.mamba.out_proj.weight',
  'model.layers.*.self_attn.q_proj.weight',
  'model.layers.*.self_attn.k_proj.weight',
  'model.layers.*.self_attn.v_proj.weight',
  'model.layers.*.self_attn.o_proj.weight',
  'model.layers.*.shared_mlp.input_linear.weight',
  'model.layers.*.shared_mlp.output_linear.weight',
  'model.layers.*.block_sparse_moe.input_linear.weight',
  'model.layers.*.block_sparse_moe.output_linear.weight',
];

/**
 * Per-weight exceptions to the policy: parameter names or globs (`*` matches any run of characters,
 * dots included) mapped to a dtype, or a function of the name, checkpoint shape and the dtype the
 * policy chose. An exact name beats a glob; of several matching globs the longest wins.
 */
export type WeightDtypeOverrides =
  | Readonly<Record<string, WeightDtype>>
  | ((name: string, shape: readonly number[], policyDtype: WeightDtype) => WeightDtype);

/** How to hold a model's weights. */
export interface WeightPolicyOptions {
  /**
   * The dtype of the packed weights ({@link PACKED_WEIGHTS}); default `'f32'` (nothing packed), or,
   * with {@link WeightPolicyOptions.storedDtypes}, each weight as it is stored.
   */
  dtype?: WeightDtype;
  dtypeOverrides?: WeightDtypeOverrides;
  /**
   * The dtype each parameter is stored in (a packed checkpoint: its format, else `'f32'`). Without
   * `dtype`, every weight is held as stored (overrides still apply); with `dtype`, this is ignored
   * and weights stored in another dtype are repacked.
   */
  storedDtypes?: ReadonlyMap<string, WeightDtype>;
}

/** The dtype of every parameter, and why any weight is not held as asked. */
export interface WeightPlan {
  dtype: WeightDtype;
  dtypes: Map<string, WeightDtype>;
  /** One line per weight held float32 against the policy or an override, saying why. */
  notes: string[];
}

/** A dtype or an override that cannot apply to this model, named. */
export class WeightPolicyError extends Error {
  override name = 'WeightPolicyError';
}

/** The expert weights the experts op needs held alike (both packed, in any formats, or both float32). */
const EXPERT_PAIR = /^(.*\.block_sparse_moe)\.(input|output)_linear\.weight$/;

/**
 * A matcher of `glob` (`*`: any run of characters). Prefix, suffix and in-order pieces rather than
 * a RegExp, whose backtracking made planning a 4096-layer config (50 000 names) take 100 ms.
 */
function compileGlob(glob: string): (name: string) => boolean {
  const parts = glob.split('*');
  if (parts.length === 1) return (name) => name === glob;
  const first = parts[0];
  const last = parts[parts.length - 1];
  const middle = parts.slice(1, -1).filter((p) => p !== '');
  const minLength = parts.reduce((n, p) => n + p.length, 0);
  return (name) => {
    if (name.length < minLength || !name.startsWith(first) || !name.endsWith(last)) return false;
    const end = name.length - last.length;
    let at = first.length;
    for (const part of middle) {
      const found = name.indexOf(part, at);
      if (found < 0 || found + part.length > end) return false;
      at = found + part.length;
    }
    return true;
  };
}

const PACKED_SET = new Set(PACKED_WEIGHTS);
const LAYER_PREFIX = 'model.layers.';

/** The dtype `dtype` gives `name` before overrides: `dtype` for the packed weights, else f32. */
export function policyDtype(name: string, dtype: WeightDtype): WeightDtype {
  if (dtype === 'f32') return 'f32';
  // The policy's globs differ from names only in the layer index: one Set lookup a name.
  let generic = name;
  if (name.startsWith(LAYER_PREFIX)) {
    const dot = name.indexOf('.', LAYER_PREFIX.length);
    if (dot > 0) generic = `${LAYER_PREFIX}*${name.slice(dot)}`;
  }
  return PACKED_SET.has(generic) ? dtype : 'f32';
}

/** `dtype` checked: one of f32, bf16, q8_0, q4_0. */
export function checkWeightDtype(dtype: unknown, what = 'dtype'): WeightDtype {
  if (!isWeightDtype(dtype)) {
    throw new WeightPolicyError(`${what} must be one of ${WEIGHT_DTYPES.join(', ')}; got ${previewJson(dtype)}.`);
  }
  return dtype;
}

interface CompiledOverride {
  key: string;
  dtype: WeightDtype;
  exact: boolean;
  matches: (name: string) => boolean;
  used: boolean;
}

function compileOverrides(overrides: Readonly<Record<string, WeightDtype>>): CompiledOverride[] {
  return (
    Object.entries(overrides)
      .map(([key, dtype]) => ({
        key,
        dtype: checkWeightDtype(dtype, `dtypeOverrides[${JSON.stringify(key)}]`),
        exact: !key.includes('*'),
        matches: compileGlob(key),
        used: false,
      }))
      // Exact names first, then globs from the longest (the most specific) down; a stable sort keeps
      // equally long globs in the order given.
      .sort((a, b) => Number(b.exact) - Number(a.exact) || b.key.length - a.key.length)
  );
}

/** What planning needs of each parameter whatever the dtype, worked out once for every dtype planned. */
export interface PlanBase {
  names: string[];
  shapes: (readonly number[])[];
  /** The policy packs it (at whatever dtype is asked). */
  packedByPolicy: boolean[];
  /** The dtype a name or glob override gives it. */
  overridden: (WeightDtype | undefined)[];
  /** Index of the other expert weight of the same layer, or −1. */
  partner: Int32Array;
  overrides: WeightDtypeOverrides | undefined;
}

/** The dtype-independent part of a plan; throws for an override that matches no parameter. */
export function planBase(params: Iterable<readonly [string, readonly number[]]>, overrides?: WeightDtypeOverrides): PlanBase {
  const table = overrides !== undefined && typeof overrides !== 'function' ? compileOverrides(overrides) : [];
  const names: string[] = [];
  const shapes: (readonly number[])[] = [];
  const packedByPolicy: boolean[] = [];
  const overridden: (WeightDtype | undefined)[] = [];
  const experts = new Map<string, number>();
  for (const [name, shape] of params) {
    if (name.endsWith('_linear.weight') && EXPERT_PAIR.test(name)) experts.set(name, names.length);
    names.push(name);
    shapes.push(shape);
    packedByPolicy.push(policyDtype(name, 'q4_0') !== 'f32');
    const hit = table.find((o) => o.matches(name));
    if (hit) hit.used = true;
    overridden.push(hit?.dtype);
  }
  const unused = table.filter((o) => !o.used);
  if (unused.length > 0) {
    const example = names.find((_, i) => packedByPolicy[i]) ?? names[0];
    throw new WeightPolicyError(
      `dtypeOverrides ${unused.map((o) => JSON.stringify(o.key)).join(', ')} match${unused.length === 1 ? 'es' : ''} no parameter of this model. ` +
        `Give parameter names as in the checkpoint (e.g. ${JSON.stringify(example)}), or globs such as "*.mamba.in_proj.weight".`,
    );
  }
  const partner = new Int32Array(names.length).fill(-1);
  for (const [name, i] of experts) {
    const [, moe, side] = EXPERT_PAIR.exec(name)!;
    partner[i] = experts.get(`${moe}.${side === 'input' ? 'output' : 'input'}_linear.weight`) ?? -1;
  }
  return { names, shapes, packedByPolicy, overridden, partner, overrides };
}

/**
 * The dtype of each parameter of `base` (in its order) at `dtype`, and the notes; with `stored`
 * (one entry per parameter), each parameter's policy dtype is its stored one instead.
 */
export function resolvePlan(base: PlanBase, dtype: WeightDtype, stored?: readonly WeightDtype[]): { held: WeightDtype[]; notes: string[] } {
  const { names, shapes, overrides } = base;
  const held: WeightDtype[] = new Array(names.length);
  const notes: string[] = [];
  for (let i = 0; i < names.length; i++) {
    const shape = shapes[i];
    let chosen = base.overridden[i] ?? stored?.[i] ?? (base.packedByPolicy[i] ? dtype : 'f32');
    if (typeof overrides === 'function') {
      chosen = checkWeightDtype(overrides(names[i], shape, chosen), `dtypeOverrides(${JSON.stringify(names[i])})`);
    }
    const cols = shape[shape.length - 1];
    if (chosen !== 'f32' && (shape.length === 0 || !canPackRows(chosen, cols))) {
      notes.push(`${names[i]} [${shape}] stays f32: its rows of ${cols} weights are not whole ${chosen} blocks of 32.`);
      chosen = 'f32';
    }
    held[i] = chosen;
  }
  for (let i = 0; i < names.length; i++) {
    const other = base.partner[i];
    if (other >= 0 && held[i] !== 'f32' && held[other] === 'f32') {
      held[i] = 'f32';
      notes.push(`${names[i]} [${shapes[i]}] stays f32 like ${names[other]}: the experts run with both weights packed or both float32.`);
    }
  }
  return { held, notes };
}

/**
 * The dtype of every parameter of a model under `options`: the policy ({@link PACKED_WEIGHTS}),
 * then the overrides. A weight whose rows (its last dimension) are not whole blocks of its dtype
 * (32 weights for q8_0 / q4_0) stays float32, and so does the partner of an expert weight that
 * does; `notes` says so. An override that matches no parameter is an error (a misspelt name would
 * otherwise be ignored without a word).
 *
 * @param params every parameter's name and checkpoint shape
 */
export function planWeightDtypes(params: Iterable<readonly [string, readonly number[]]>, options: WeightPolicyOptions = {}): WeightPlan {
  const base = planBase(params, options.dtypeOverrides);
  const stored = options.dtype === undefined ? storedDtypesOf(base, options.storedDtypes) : undefined;
  const dtype = stored !== undefined ? mainDtype(base.shapes, stored) : checkWeightDtype(options.dtype ?? 'f32');
  const { held, notes } = resolvePlan(base, dtype, stored);
  return { dtype, dtypes: new Map(base.names.map((name, i) => [name, held[i]])), notes };
}

/** `stored` in the order of `base` (f32 for a name it lacks), or undefined without it. */
export function storedDtypesOf(base: PlanBase, stored: ReadonlyMap<string, WeightDtype> | undefined): WeightDtype[] | undefined {
  return stored && base.names.map((name) => stored.get(name) ?? 'f32');
}

/** The packed dtype holding the most weights, else f32: what a packed checkpoint is "at". */
export function mainDtype(shapes: readonly (readonly number[])[], dtypes: readonly WeightDtype[]): WeightDtype {
  const weights = new Map<WeightDtype, number>();
  dtypes.forEach((d, i) => {
    if (d !== 'f32') weights.set(d, (weights.get(d) ?? 0) + shapes[i].reduce((a, b) => a * b, 1));
  });
  let best: WeightDtype = 'f32';
  for (const [d, n] of weights) if (best === 'f32' || n > weights.get(best)!) best = d;
  return best;
}
