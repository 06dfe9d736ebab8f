/**
 * Kernel identities of @graniteflow/ops-moe: one PascalCase name per kernel with its typed inputs
 * and attrs.
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import type { PackedFormat } from '@graniteflow/core';

/** Top-k routing: top-k of raw logits, softmax over the k selected only (model guide: Pitfalls, P11). */
export const MoeTopKRouter = 'MoeTopKRouter';
/** `logits` [N, E] float32. */
export type MoeTopKRouterInputs = { logits: Tensor };
/** `k` experts per token, 1 ≤ k ≤ E. */
export type MoeTopKRouterAttrs = { k: number };

/** Dispatch: token slots sorted by expert (stable), with per-expert offsets. */
export const MoeDispatch = 'MoeDispatch';
/** `indices` [N, k] int32 expert ids. */
export type MoeDispatchInputs = { indices: Tensor };
export type MoeDispatchAttrs = { numExperts: number };

/** Combine: weighted scatter-add of expert outputs (sorted slot order) back to token order. */
export const MoeCombine = 'MoeCombine';
/** `expertOutputs` [N·k, H] in dispatch order; `order` [N·k] int32 slot ids; `weights` [N, k]. */
export type MoeCombineInputs = { expertOutputs: Tensor; order: Tensor; weights: Tensor };
export type MoeCombineAttrs = Record<string, never>;

/** SwiGLU on packed halves: `silu(a[..., :I]) ⊙ a[..., I:]`. */
export const MoeSwiGLU = 'MoeSwiGLU';
/** `a` [..., 2I] float32. */
export type MoeSwiGLUInputs = { a: Tensor };
export type MoeSwiGLUAttrs = Record<string, never>;

/**
 * Routed experts computed row by row from the packed weights in place (the decode path): only the
 * selected experts' weights are read.
 */
export const MoeExpertsGemv = 'MoeExpertsGemv';
/**
 * `x` [N, H]; `inputLinear` [E, 2I, H]; `outputLinear` [E, H, I]; `indices` [N, k] int32;
 * `weights` [N, k].
 */
export type MoeExpertsGemvInputs = {
  x: Tensor;
  inputLinear: Tensor;
  outputLinear: Tensor;
  indices: Tensor;
  weights: Tensor;
};
export type MoeExpertsGemvAttrs = Record<string, never>;

/**
 * Routed experts over packed (BF16 / Q8_0 / Q4_0) expert weights: slots grouped by expert, each
 * non-empty expert's token group multiplied by that expert's rows only, unpacked a row at a time.
 */
export const MoePackedExperts = 'MoePackedExperts';
/**
 * `x` [N, H]; `inputLinear`, `outputLinear`: the int32 storage of the packed [E, 2I, H] and
 * [E, H, I] weights (`PackedTensor.bytes`); `indices` [N, k] int32; `weights` [N, k].
 */
export type MoePackedExpertsInputs = {
  x: Tensor;
  inputLinear: Tensor;
  outputLinear: Tensor;
  indices: Tensor;
  weights: Tensor;
};
/** Formats of the two weights and the sizes E, H, I (the storage tensors carry no shape of their own). */
export type MoePackedExpertsAttrs = {
  inputFormat: PackedFormat;
  outputFormat: PackedFormat;
  numExperts: number;
  hiddenSize: number;
  intermediateSize: number;
};

/** Row gather `out[p] = x[rows[p]]` whose gradient is {@link MoeScatterRows} (works where tfjs has no UnsortedSegmentSum, e.g. wasm). */
export const MoeGatherRows = 'MoeGatherRows';
/** `x` [N, H]; `rows` [M] int32 in [0, N). */
export type MoeGatherRowsInputs = { x: Tensor; rows: Tensor };
export type MoeGatherRowsAttrs = Record<string, never>;

/** Row scatter-add `out[rows[p]] += src[p]`, the adjoint of {@link MoeGatherRows}. */
export const MoeScatterRows = 'MoeScatterRows';
/** `src` [M, H]; `rows` [M] int32 in [0, numRows). */
export type MoeScatterRowsInputs = { src: Tensor; rows: Tensor };
export type MoeScatterRowsAttrs = { numRows: number };

/**
 * Contiguous slice along the leading axis, `x[start : start + count]` — a plain copy (tfjs wasm's
 * generic Slice runs ~100× slower on a 6 MB expert).
 */
export const MoeTakeRows = 'MoeTakeRows';
/** `x` [R, ...]. */
export type MoeTakeRowsInputs = { x: Tensor };
export type MoeTakeRowsAttrs = { start: number; count: number };
