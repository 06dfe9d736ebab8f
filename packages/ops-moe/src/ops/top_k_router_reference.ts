import * as tf from '@tensorflow/tfjs-core';

/**
 * Top-k indices of `logits` [N, E] with no gradient path: tfjs has no TopK gradient, and indices
 * carry none anyway. The ops inside a custom-gradient function are not taped.
 */
export function topKIndices(logits: tf.Tensor, k: number): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    return { value: tf.topk(x, k, true).indices, gradFunc: () => tf.zerosLike(x) };
  });
  return f(logits);
}

/**
 * {@link topKRouter} from stock tfjs ops: `tf.topk` (which puts the lower index first on ties),
 * then a softmax over the k selected logits, gathered with a one-hot so that autodiff reaches the
 * logits. Returns `[weights [N,k], indices [N,k] int32]`.
 */
export function topKRouterReference(logits: tf.Tensor, k: number): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const e = logits.shape[logits.shape.length - 1];
    const indices = topKIndices(logits, k); // [N, k]
    const mask = tf.cast(tf.oneHot(indices, e), 'float32'); // [N, k, E]
    const selected = tf.sum(tf.mul(mask, tf.expandDims(logits, 1)), -1); // [N, k]
    return [tf.softmax(selected, -1), indices];
  });
}
