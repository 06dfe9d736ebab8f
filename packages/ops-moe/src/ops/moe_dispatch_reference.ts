import * as tf from '@tensorflow/tfjs-core';

/**
 * {@link moeDispatch} from stock tfjs ops: a stable sort by the key `expert·M + slot` (as a top-k
 * of the negated keys), counts from a one-hot, offsets from a cumulative sum.
 * Returns `[order [M], tokens [M], offsets [E+1]]` (int32), M = N·k.
 */
export function moeDispatchReference(indices: tf.Tensor, numExperts: number): tf.Tensor[] {
  return tf.tidy(() => {
    const k = indices.shape[1] ?? 1;
    const flat = tf.reshape(tf.cast(indices, 'int32'), [-1]); // [M]
    const m = flat.shape[0];
    if (m === 0) return [tf.zeros([0], 'int32'), tf.zeros([0], 'int32'), tf.zeros([numExperts + 1], 'int32')];
    const slots = tf.range(0, m, 1, 'int32');
    const key = tf.add(tf.mul(flat, tf.scalar(m, 'int32')), slots);
    const order = tf.topk(tf.neg(key), m, true).indices; // ascending key
    const tokens = tf.floorDiv(order, tf.scalar(k, 'int32'));
    const counts = tf.sum(tf.oneHot(flat, numExperts), 0); // [E] int32
    const offsets = tf.concat([tf.zeros([1], 'int32'), tf.cumsum(counts)]);
    return [order, tokens, tf.cast(offsets, 'int32')];
  });
}
