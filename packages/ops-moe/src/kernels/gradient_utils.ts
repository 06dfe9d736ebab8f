import * as tf from '@tensorflow/tfjs-core';

/**
 * The "gradient" of an integer input (indices, a permutation): float32 zeros of its shape. tfjs
 * requires a float32 gradient for every input reachable from the differentiated variables, and
 * routing indices are reachable from x through the router.
 */
export function noGradient(t: tf.Tensor): tf.Tensor {
  return tf.zeros(t.shape, 'float32');
}

/**
 * Vector-Jacobian product of `fn` at `xs` against the output cotangent `dy`, runnable from inside a
 * gradient function. A `tf.grads` started while no tape records would replace the outer tape (and
 * null it when done) under the backprop still walking it, so the outer tape is put back after.
 */
export function vjp(fn: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
  const outer = state.activeTape;
  try {
    return tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(fn(...args), dy)))(xs);
  } finally {
    state.activeTape = outer;
  }
}
