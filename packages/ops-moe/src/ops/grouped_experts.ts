import * as tf from '@tensorflow/tfjs-core';
import { moeCombineKernel } from '../kernels/MoeCombine';
import { moeDispatchKernel } from '../kernels/MoeDispatch';
import { moeGatherRowsKernel } from '../kernels/MoeRows';
import { moeSwiGLUKernel } from '../kernels/MoeSwiGLU';
import { moeTakeRowsKernel } from '../kernels/MoeTakeRows';

/**
 * The sorted-dispatch path: one matMul pair per non-empty expert on its contiguous rows. Also the
 * reference (and so the gradient) of the in-place gemv kernel.
 */
export function groupedExperts(
  x: tf.Tensor,
  inputLinear: tf.Tensor,
  outputLinear: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
): tf.Tensor {
  const [e, twoI, h] = inputLinear.shape;
  const i = twoI / 2;
  return tf.tidy(() => {
    const [order, tokens, offsetsT] = moeDispatchKernel.run({ indices }, { numExperts: e });
    const offsets = offsetsT.dataSync(); // E + 1 ints: which experts have work
    const xs = moeGatherRowsKernel.run({ x, rows: tokens }, {})[0]; // [M, H], rows grouped by expert
    const parts: tf.Tensor[] = [];
    for (let ex = 0; ex < e; ex++) {
      const start = offsets[ex];
      const count = offsets[ex + 1] - start;
      if (count === 0) continue;
      // Each expert in its own scope so its weight slices are freed before the next one.
      parts.push(
        tf.tidy(() => {
          const take = (t: tf.Tensor, from: number, n: number) => moeTakeRowsKernel.run({ x: t }, { start: from, count: n })[0];
          const rows = take(xs, start, count); // [c, H]
          const w1 = tf.reshape(take(inputLinear, ex, 1), [twoI, h]);
          const a = tf.matMul(rows, w1, false, true); // [c, 2I]
          const act = moeSwiGLUKernel.run({ a }, {})[0]; // [c, I]
          const w2 = tf.reshape(take(outputLinear, ex, 1), [h, i]);
          return tf.matMul(act, w2, false, true); // [c, H]
        }),
      );
    }
    const ys = parts.length === 1 ? parts[0] : tf.concat(parts, 0); // [M, H]
    return moeCombineKernel.run({ expertOutputs: ys, order, weights }, {})[0];
  });
}
