import * as tf from '@tensorflow/tfjs-core';

let seed = 1;

/** Deterministic normal tensor (each call advances the seed). */
export function randn(shape: number[], scale = 1, mean = 0): tf.Tensor {
  return tf.randomNormal(shape, mean, scale, 'float32', seed++);
}

/** Deterministic uniform tensor. */
export function randu(shape: number[], lo: number, hi: number): tf.Tensor {
  return tf.randomUniform(shape, lo, hi, 'float32', seed++);
}

/** float64 copy of a tensor's values. */
export function f64(t: tf.Tensor): Float64Array {
  return Float64Array.from(t.dataSync());
}
