import type * as tf from '@tensorflow/tfjs-core';

/**
 * Kernel identities of @graniteflow/ops-mamba: one PascalCase name per kernel with its `Inputs` and
 * `Attrs` types. Input names follow the checkpoint keys (`A_log`, `dt_bias`, `D`) so nothing has to be translated on the way in.
 */

/** Time-step clamp applied after softplus (`time_step_limit`; model guide: The Mamba-2 mixer, step 4). */
export type TimeStepLimitAttrs = {
  /** Lower clamp of dt after softplus (HF default 0). */
  dtMin: number;
  /** Upper clamp of dt after softplus (HF default Infinity). */
  dtMax: number;
};

export const SelectiveScan = 'SelectiveScan';
export type SelectiveScanInputs = {
  /** [B, T, Hm, P] conv output, head-major */
  x: tf.Tensor;
  /** [B, T, Hm] raw time steps (before dt_bias and softplus) */
  dt: tf.Tensor;
  /** [Hm] log of −A */
  A_log: tf.Tensor;
  /** [B, T, G, N] */
  B: tf.Tensor;
  /** [B, T, G, N] */
  C: tf.Tensor;
  /** [Hm] skip connection per head */
  D: tf.Tensor;
  /** [Hm] */
  dt_bias: tf.Tensor;
  /** [B, Hm, P, N] state before the first token (zeros when absent) */
  initialState?: tf.Tensor;
};
export type SelectiveScanAttrs = TimeStepLimitAttrs & {
  /** Chunk length of the composed (chunked SSD) reference; does not change the math. */
  chunkSize: number;
};

export const SelectiveScanGrad = 'SelectiveScanGrad';
/** The scan's inputs plus the upstream gradients of its two outputs. */
export type SelectiveScanGradInputs = SelectiveScanInputs & {
  /** [B, T, Hm, P] gradient reaching y */
  dy: tf.Tensor;
  /** [B, Hm, P, N] gradient reaching finalState */
  dFinalState: tf.Tensor;
};
export type SelectiveScanGradAttrs = SelectiveScanAttrs;

export const SelectiveStateUpdate = 'SelectiveStateUpdate';
export type SelectiveStateUpdateInputs = {
  /** [B, Hm, P] */
  x: tf.Tensor;
  /** [B, Hm] raw time steps */
  dt: tf.Tensor;
  /** [Hm] */
  A_log: tf.Tensor;
  /** [B, G, N] */
  B: tf.Tensor;
  /** [B, G, N] */
  C: tf.Tensor;
  /** [Hm] */
  D: tf.Tensor;
  /** [Hm] */
  dt_bias: tf.Tensor;
  /** [B, Hm, P, N] state after the previous token */
  state: tf.Tensor;
};
export type SelectiveStateUpdateAttrs = TimeStepLimitAttrs & {
  /**
   * The caller gives `state` up: a backend may write the new state into its memory when no other
   * tensor shares it (the native backend does, outside gradient recording) instead of allocating
   * a new one. Absent: false.
   */
  reuseState?: boolean;
};

export const CausalConv1d = 'CausalConv1d';
export type CausalConv1dInputs = {
  /** [B, T, C] channels-last */
  x: tf.Tensor;
  /** [C, K]; tap K−1 multiplies the current token */
  weight: tf.Tensor;
  /** [C] */
  bias?: tf.Tensor;
  /** [B, K−1, C] last K−1 raw inputs before x (zeros when absent) */
  convState?: tf.Tensor;
};
/** Activation applied after the conv. */
export type ConvActivation = 'silu' | 'none';
export type CausalConv1dAttrs = { activation: ConvActivation };

export const GatedRmsNorm = 'GatedRmsNorm';
export type GatedRmsNormInputs = {
  /** [..., D] */
  y: tf.Tensor;
  /** [..., D] gate */
  z: tf.Tensor;
  /** [D] */
  weight: tf.Tensor;
};
export type GatedRmsNormAttrs = {
  eps: number;
  /** Channels normalised together; D (the default) is HF's full-width norm. */
  groupSize: number;
};
