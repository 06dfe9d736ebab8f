import * as tf from '@tensorflow/tfjs-core';

/** {@link swiglu} from stock tfjs ops: `g · sigmoid(g) · u` with `[g, u]` the halves of the last axis. */
export function swigluReference(a: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [g, u] = tf.split(a, 2, -1);
    return tf.mul(tf.mul(g, tf.sigmoid(g)), u);
  });
}
