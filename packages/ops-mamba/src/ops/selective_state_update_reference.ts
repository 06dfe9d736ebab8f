import * as tf from '@tensorflow/tfjs-core';
import type { SelectiveStateUpdateAttrs, SelectiveStateUpdateInputs } from '../kernel_names';
import { decayRateReference, discretizeDtReference } from './discretize_reference';

/**
 * One recurrent step composed from stock tfjs ops (model guide: Decode step):
 * `S = exp(dt·A)·S + dt·x⊗B[g(h)]`, `y = S·C[g(h)] + D·x`.
 */
export function selectiveStateUpdateReference(inputs: SelectiveStateUpdateInputs, attrs: SelectiveStateUpdateAttrs): tf.Tensor[] {
  const { x, dt: dtRaw, A_log, B, C, D, dt_bias, state } = inputs;
  const [batch, Hm, P] = x.shape;
  const [, G, N] = B.shape;
  const hpg = Hm / G;
  return tf.tidy(() => {
    const dt = discretizeDtReference(dtRaw, dt_bias, attrs.dtMin, attrs.dtMax); // [B, Hm]
    const decay = tf.exp(tf.mul(dt, decayRateReference(A_log))); // [B, Hm]
    // Heads as [G, hpg]: head h = g·hpg + j reads group g (P12).
    const xd = tf.reshape(tf.mul(x, tf.expandDims(dt, -1)), [batch, G, hpg, P, 1]);
    const b = tf.reshape(B, [batch, G, 1, 1, N]);
    const c = tf.reshape(C, [batch, G, 1, 1, N]);
    const s = tf.reshape(state, [batch, G, hpg, P, N]);
    const newState = tf.add(tf.mul(s, tf.reshape(decay, [batch, G, hpg, 1, 1])), tf.mul(xd, b)); // [B, G, hpg, P, N]
    const read = tf.sum(tf.mul(newState, c), -1); // [B, G, hpg, P]
    const y = tf.add(tf.reshape(read, [batch, Hm, P]), tf.mul(x, tf.reshape(D, [Hm, 1])));
    return [y, tf.reshape(newState, [batch, Hm, P, N])];
  });
}
