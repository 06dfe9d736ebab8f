import * as tf from '@tensorflow/tfjs-core';
import type { CausalConv1dAttrs, CausalConv1dInputs } from '../kernel_names';

/**
 * Causal depthwise conv composed from stock tfjs ops: u = [convState or zeros, x] along time
 * [B, K−1+T, C], then y_t = Σ_k w[:, k]·u_{t+k} (tap K−1 = current token, P3) as K shifted slices,
 * + bias, activation. The new state is the last K−1 rows of u (raw inputs, P22).
 */
export function causalConv1dReference(inputs: CausalConv1dInputs, attrs: CausalConv1dAttrs): tf.Tensor[] {
  const { x, weight, bias, convState } = inputs;
  const [batch, T, C] = x.shape;
  const K = (weight.shape as number[])[1];
  const S = K - 1;
  return tf.tidy(() => {
    const u = S > 0 ? tf.concat([convState ?? tf.zeros([batch, S, C]), x], 1) : x; // [B, S + T, C]
    // A broadcasting add, not broadcastTo: tfjs differentiates broadcastTo (a Tile) with one slice
    // and one add per repeat, B·T of each per layer in training.
    let y: tf.Tensor = bias ? tf.add(tf.zeros([batch, T, C]), bias) : tf.zeros([batch, T, C]);
    for (let k = 0; k < K; k++) {
      const tap = tf.reshape(tf.slice(weight, [0, k], [C, 1]), [C]); // [C]
      y = tf.add(y, tf.mul(tf.slice(u, [0, k, 0], [batch, T, C]), tap));
    }
    if (attrs.activation === 'silu') y = tf.mul(y, tf.sigmoid(y));
    const newState = tf.slice(u, [0, T, 0], [batch, S, C]); // [B, K−1, C]
    return [y, newState];
  });
}
