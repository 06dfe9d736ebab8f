import type * as tf from '@tensorflow/tfjs-core';
import { moeDispatchKernel } from '../kernels/MoeDispatch';
import { checkDtype, checkRank, fail, shapeStr } from './checks';

/** Result of {@link moeDispatch}; M = N·k token slots, slot `s = n·k + j`. */
export interface MoeDispatchResult {
  /** Slots sorted by expert, stable (ascending slot within an expert): [M] int32. */
  order: tf.Tensor;
  /** Token of each sorted slot, `order / k`: [M] int32. */
  tokens: tf.Tensor;
  /** Expert e owns sorted rows `offsets[e] .. offsets[e+1]`: [E+1] int32. */
  offsets: tf.Tensor;
}

/**
 * Groups token slots by expert (a stable counting sort), the permutation that lets each expert
 * process its tokens as one contiguous block (SwitchGLU-style sorted dispatch). Experts that
 * receive no token get an empty range.
 *
 * @param indices expert ids [N, k] int32, each in [0, numExperts)
 * @param numExperts E
 *
 * @example
 * ```ts
 * const { order, tokens, offsets } = moeDispatch(tf.tensor2d([[2, 0], [0, 1]], [2, 2], 'int32'), 3);
 * order.print();   // [1, 2, 3, 0]   slots of expert 0 (1, 2), expert 1 (3), expert 2 (0)
 * tokens.print();  // [0, 1, 1, 0]
 * offsets.print(); // [0, 2, 3, 4]
 * ```
 */
export function moeDispatch(indices: tf.Tensor, numExperts: number): MoeDispatchResult {
  const op = 'moeDispatch';
  checkRank(op, 'indices', indices, 2, '[N, k]');
  checkDtype(op, 'indices', indices, 'int32');
  if (!Number.isInteger(numExperts) || numExperts < 1) fail(op, `numExperts must be a positive integer, got ${numExperts}.`);
  const values = indices.dataSync();
  for (let i = 0; i < values.length; i++) {
    if (!(values[i] >= 0 && values[i] < numExperts)) {
      fail(op, `indices ${shapeStr(indices.shape)} holds ${values[i]} at flat position ${i}, outside [0, ${numExperts}).`);
    }
  }
  const [order, tokens, offsets] = moeDispatchKernel.run({ indices }, { numExperts });
  return { order, tokens, offsets };
}
