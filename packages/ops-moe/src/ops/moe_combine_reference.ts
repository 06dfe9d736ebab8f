import * as tf from '@tensorflow/tfjs-core';

/**
 * {@link moeCombine} from stock tfjs ops: undo the dispatch permutation with a gather (its inverse
 * is the argsort of `order`, a top-k of `−order`), then a weighted sum over the k slots.
 */
export function moeCombineReference(expertOutputs: tf.Tensor, order: tf.Tensor, weights: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [n, k] = weights.shape as [number, number];
    const h = expertOutputs.shape[1] as number;
    const m = n * k;
    if (m === 0) return tf.zeros([n, h]);
    const inverse = tf.topk(tf.neg(order), m, true).indices; // slot s → sorted row
    const bySlot = tf.reshape(tf.gather(expertOutputs, inverse), [n, k, h]);
    return tf.sum(tf.mul(bySlot, tf.expandDims(weights, 2)), 1); // [N, H]
  });
}
