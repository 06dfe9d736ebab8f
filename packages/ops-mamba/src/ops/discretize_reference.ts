import * as tf from '@tensorflow/tfjs-core';

/**
 * softplus from tfjs: it returns v above ≈13.9 and exp(v) below ≈−15.9, which equals PyTorch's
 * threshold-20 form (P23) to float32 resolution, and its gradient is sigmoid(v) everywhere. (A
 * `where(v > 20, …)` form cannot be differentiated: tfjs has no gradient for `greater`.)
 */
export function softplusReference(v: tf.Tensor): tf.Tensor {
  return tf.softplus(v);
}

/**
 * dt = clamp(softplus(raw + dt_bias), dtMin, dtMax) (P4). `raw` [..., Hm], `dtBias` [Hm].
 * The clamp is skipped when it cannot bite (softplus ≥ 0), which is HF's default (0, ∞).
 */
export function discretizeDtReference(raw: tf.Tensor, dtBias: tf.Tensor, dtMin: number, dtMax: number): tf.Tensor {
  return tf.tidy(() => {
    const dt = softplusReference(tf.add(raw, dtBias));
    return dtMin <= 0 && dtMax === Infinity ? dt : tf.clipByValue(dt, dtMin, dtMax);
  });
}

/** A = −exp(A_log) (P5). */
export function decayRateReference(aLog: tf.Tensor): tf.Tensor {
  return tf.neg(tf.exp(aLog));
}
