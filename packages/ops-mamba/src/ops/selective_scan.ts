import type * as tf from '@tensorflow/tfjs-core';
import { selectiveScanKernel } from '../kernels/SelectiveScan';
import type { SelectiveScanInputs } from '../kernel_names';
import { checkGroups, checkRank, checkShape, timeStepLimit } from './validate';

/** The tensors of {@link selectiveScan}, shapes documented on the kernel's inputs; names follow the checkpoint keys. */
export type SelectiveScanArgs = SelectiveScanInputs;

/** Options of {@link selectiveScan}. */
export interface SelectiveScanOptions {
  /** (lo, hi) clamp of dt after softplus (default [0, Infinity], HF's `time_step_limit`). */
  timeStepLimit?: readonly [number, number];
  /** Chunk length of the chunked-SSD reference (default 256); never changes the result. */
  chunkSize?: number;
}

/**
 * The Mamba-2 selective scan (SSD) over a whole sequence (model guide: The Mamba-2 mixer, step 5):
 *
 * `dt = clamp(softplus(dt + dt_bias), lo, hi)`, `A = −exp(A_log)`,
 * `S_t = exp(dt_t·A)·S_{t−1} + dt_t·x_t⊗B_t[g(h)]`, `y_t = S_t·C_t[g(h)] + D·x_t`,
 * with head h reading group ⌊h/(Hm/G)⌋.
 *
 * Runs the fused kernel on `cpu` and `wasm`, the chunked-SSD composition of stock ops elsewhere.
 * Differentiable with respect to every float input, including `initialState`.
 *
 * @returns `y` [B, T, Hm, P] and `finalState` [B, Hm, P, N] (the state after the last token)
 *
 * @example
 * ```ts
 * const [b, t, hm, p, g, n] = [1, 6, 4, 8, 1, 16];
 * const { y, finalState } = selectiveScan({
 *   x: tf.randomNormal([b, t, hm, p]), dt: tf.randomNormal([b, t, hm]),
 *   A_log: tf.zeros([hm]), B: tf.randomNormal([b, t, g, n]), C: tf.randomNormal([b, t, g, n]),
 *   D: tf.ones([hm]), dt_bias: tf.zeros([hm]),
 * });
 * // y: [1, 6, 4, 8], finalState: [1, 4, 8, 16]
 * ```
 */
export function selectiveScan(args: SelectiveScanArgs, options: SelectiveScanOptions = {}): { y: tf.Tensor; finalState: tf.Tensor } {
  const op = 'selectiveScan';
  const { x, dt, A_log, B, C, D, dt_bias, initialState } = args;
  checkRank(op, 'x', x, ['B', 'T', 'Hm', 'P']);
  const [batch, T, Hm, P] = x.shape;
  checkShape(op, 'B', B, ['B', 'T', 'G', 'N'], [batch, T, -1, -1]);
  const [, , G, N] = B.shape;
  checkGroups(op, Hm, G, 'B', B.shape);
  checkShape(op, 'C', C, ['B', 'T', 'G', 'N'], [batch, T, G, N]);
  checkShape(op, 'dt', dt, ['B', 'T', 'Hm'], [batch, T, Hm]);
  checkShape(op, 'A_log', A_log, ['Hm'], [Hm]);
  checkShape(op, 'D', D, ['Hm'], [Hm]);
  checkShape(op, 'dt_bias', dt_bias, ['Hm'], [Hm]);
  if (initialState) checkShape(op, 'initialState', initialState, ['B', 'Hm', 'P', 'N'], [batch, Hm, P, N]);
  const chunkSize = options.chunkSize ?? 256;
  if (!(Number.isInteger(chunkSize) && chunkSize > 0)) {
    throw new RangeError(`${op}: chunkSize must be a positive integer, got ${chunkSize}`);
  }
  const [y, finalState] = selectiveScanKernel.run(
    { x, dt, A_log, B, C, D, dt_bias, initialState },
    { ...timeStepLimit(op, options.timeStepLimit), chunkSize },
  );
  return { y, finalState };
}
