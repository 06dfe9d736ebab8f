import * as tf from '@tensorflow/tfjs-core';
import { SparseMoE, type SparseMoEConfig } from '../src';

/** Deterministic normal tensor (scaled). */
export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale));
}

/** A SparseMoE with seeded random weights (scaled so activations stay O(1)). */
export function makeMoe(config: SparseMoEConfig, seed = 1): SparseMoE {
  const moe = new SparseMoE(config);
  const { hiddenSize: h, intermediateSize: i, numExperts: e } = config;
  moe.loadStateDict({
    'router.layer.weight': randn([e, h], seed, 1),
    'input_linear.weight': randn([e, 2 * i, h], seed + 1, 1 / Math.sqrt(h)),
    'output_linear.weight': randn([e, h, i], seed + 2, 1 / Math.sqrt(i)),
  });
  return moe;
}

/** Central finite difference of scalar f at flat position `at` of `x` (values copied). */
export function finiteDiff(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, at: number, eps = 1e-2): number {
  const base = x.dataSync().slice() as Float32Array;
  const evalAt = (delta: number) =>
    tf.tidy(() => {
      const v = base.slice();
      v[at] += delta;
      return f(tf.tensor(v, x.shape)).dataSync()[0];
    });
  return (evalAt(eps) - evalAt(-eps)) / (2 * eps);
}
