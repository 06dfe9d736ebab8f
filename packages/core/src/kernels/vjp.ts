import * as tf from '@tensorflow/tfjs-core';

/**
 * Vector-Jacobian products of `fn` at `xs` against the output cotangents `dys` (one per output of
 * `fn`): the gradients of Σᵢ sum(outᵢ · dyᵢ) with respect to each of `xs`. Meant for gradient
 * functions that differentiate a composed reference with tfjs autodiff.
 *
 * Why not plain `tf.grads`: inside a gradient function no tape is recording, so tfjs treats a
 * nested `tf.grads` as top level — it replaces the engine's active tape and sets it to null when
 * done, under the backprop that is still walking the outer tape. The outer tape is put back after.
 */
export function vjp(fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], xs: tf.Tensor[], dys: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
  const cotangents = Array.isArray(dys) ? dys : [dys];
  const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
  const outerTape = state.activeTape;
  try {
    return tf.grads((...args: tf.Tensor[]) => {
      const out = fn(...args);
      const outs = Array.isArray(out) ? out : [out];
      const terms = outs.map((o, i) => tf.sum(tf.mul(o, cotangents[i])));
      return terms.length === 1 ? terms[0] : tf.addN(terms);
    })(xs);
  } finally {
    state.activeTape = outerTape;
  }
}
