import type * as tf from '@tensorflow/tfjs-core';
import { moeSwiGLUKernel } from '../kernels/MoeSwiGLU';
import { checkDtype, failShape, shapeStr } from './checks';

/**
 * SwiGLU on a packed projection: `silu(a[..., :I]) ⊙ a[..., I:]` — first half gate (activated),
 * second half up, halves not interleaved (model guide: Mixture of experts; Pitfalls, P11).
 * Differentiable.
 *
 * @param a [..., 2I] float32
 * @returns [..., I]
 *
 * @example
 * ```ts
 * swiglu(tf.tensor2d([[0, 1, 5, 2]])).print(); // [[0, 1.4621]]  = [silu(0)·5, silu(1)·2]
 * ```
 */
export function swiglu(a: tf.Tensor): tf.Tensor {
  const op = 'swiglu';
  checkDtype(op, 'a', a, 'float32');
  const last = a.shape[a.rank - 1];
  if (a.rank < 1 || last % 2 !== 0) failShape(op, `a must be [..., 2I] with an even last axis, got ${shapeStr(a.shape)}.`);
  return moeSwiGLUKernel.run({ a }, {})[0];
}
