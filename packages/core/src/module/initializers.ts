import * as tf from '@tensorflow/tfjs-core';

/** What an {@link Initializer} is told besides the shape. */
export interface InitContext {
  /** Standard deviation of normal initializers: Hugging Face's `initializer_range` (default 0.02). */
  std: number;
  /** Seed of random initializers; a fresh random value each call when absent. */
  seed?: number;
}

/** Makes a parameter's initial value, in checkpoint layout, of exactly `shape`. */
export type Initializer = (shape: number[], context: InitContext) => tf.Tensor;

/** Hugging Face's default `initializer_range` (`PretrainedConfig`). */
export const DEFAULT_INIT_STD = 0.02;

/** Every element `value`. */
export function constantInit(value: number): Initializer {
  return (shape) => tf.fill(shape, value);
}

/** Zeros: biases, and every parameter under `init: 'zeros'`. */
export const zerosInit: Initializer = (shape) => tf.zeros(shape);

/** Ones: norm weights (RMSNorm, gated RMSNorm), Mamba-2's `D` and `dt_bias`. */
export const onesInit: Initializer = (shape) => tf.ones(shape);

/**
 * Normal with mean 0 and the context's `std`: what `PreTrainedModel._init_weights` gives
 * `nn.Linear`, `nn.Conv1d` and `nn.Embedding` weights, and Granite's expert weights.
 */
export const normalInit: Initializer = (shape, { std, seed }) => tf.randomNormal(shape, 0, std, 'float32', seed);

/**
 * A per-parameter seed from a model seed and the parameter's dotted name (FNV-1a), so each
 * parameter draws different numbers and the same seed always gives the same model.
 */
export function parameterSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
