import * as tf from '@tensorflow/tfjs-core';
import { moeCombineKernel } from '../kernels/MoeCombine';
import { moeDispatchKernel } from '../kernels/MoeDispatch';
import { moeGatherRowsKernel } from '../kernels/MoeRows';
import { moeSwiGLUKernel } from '../kernels/MoeSwiGLU';
import { moeTakeRowsKernel } from '../kernels/MoeTakeRows';

/** `x[start : start + count]` along the leading axis, as one block copy where the backend has it. */
export function takeRows(x: tf.Tensor, start: number, count: number): tf.Tensor {
  return moeTakeRowsKernel.run({ x }, { start, count })[0];
}

/**
 * The sorted-dispatch path over any source of expert weights: one matMul pair per non-empty expert
 * on its contiguous rows. `expertWeights(e)` gives expert e's `[2I, H]` and `[H, I]` weights; it is
 * called only for experts that received a token, inside a scope of that expert's own (so whatever it
 * makes is freed before the next expert).
 */
export function groupedExpertsFrom(
  x: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
  numExperts: number,
  expertWeights: (expert: number) => [tf.Tensor, tf.Tensor],
): tf.Tensor {
  return tf.tidy(() => {
    const [order, tokens, offsetsT] = moeDispatchKernel.run({ indices }, { numExperts });
    const offsets = offsetsT.dataSync(); // E + 1 ints: which experts have work
    const xs = moeGatherRowsKernel.run({ x, rows: tokens }, {})[0]; // [M, H], rows grouped by expert
    const parts: tf.Tensor[] = [];
    for (let ex = 0; ex < numExperts; ex++) {
      const start = offsets[ex];
      const count = offsets[ex + 1] - start;
      if (count === 0) continue;
      parts.push(
        tf.tidy(() => {
          const [w1, w2] = expertWeights(ex);
          const rows = takeRows(xs, start, count); // [c, H]
          const a = tf.matMul(rows, w1, false, true); // [c, 2I]
          const act = moeSwiGLUKernel.run({ a }, {})[0]; // [c, I]
          return tf.matMul(act, w2, false, true); // [c, H]
        }),
      );
    }
    const ys = parts.length === 1 ? parts[0] : tf.concat(parts, 0); // [M, H]
    return moeCombineKernel.run({ expertOutputs: ys, order, weights }, {})[0];
  });
}

/**
 * The sorted-dispatch path: one matMul pair per non-empty expert on its contiguous rows. Also the
 * reference (and so the gradient) of the in-place gemv kernel.
 *
 * `splitWeights`: cut the stacked weights into their E experts once (`tf.split`), for the
 * gradient: the weight gradient is then one concat of the experts' gradients, where taking each
 * expert's rows separately gives one stacked-size padded gradient per expert, summed (E× the
 * memory traffic). Without it only the routed experts' weights are read, as inference wants.
 */
export function groupedExperts(
  x: tf.Tensor,
  inputLinear: tf.Tensor,
  outputLinear: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
  { splitWeights = false }: { splitWeights?: boolean } = {},
): tf.Tensor {
  const [e, twoI, h] = inputLinear.shape;
  const i = twoI / 2;
  if (splitWeights) {
    return tf.tidy(() => {
      const w1 = tf.split(inputLinear, e, 0);
      const w2 = tf.split(outputLinear, e, 0);
      return groupedExpertsFrom(x, indices, weights, e, (ex) => [tf.reshape(w1[ex], [twoI, h]), tf.reshape(w2[ex], [h, i])]);
    });
  }
  return groupedExpertsFrom(x, indices, weights, e, (ex) => [
    tf.reshape(takeRows(inputLinear, ex, 1), [twoI, h]),
    tf.reshape(takeRows(outputLinear, ex, 1), [h, i]),
  ]);
}
