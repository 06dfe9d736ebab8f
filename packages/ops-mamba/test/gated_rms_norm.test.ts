import { describeBackends, expectClose, expectNoTensorLeak, watchFastPath } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { gatedRmsNorm, gatedRmsNormKernel } from '../src';
import { naiveGatedNorm } from './naive';
import { f64, randn } from './random';

describeBackends('gatedRmsNorm', (backend) => {
  it('runs fused on cpu and wasm', () => {
    expect(gatedRmsNormKernel.hasFused()).toBe(backend === 'cpu' || backend === 'wasm' || backend === 'native');
  });

  it('runs its fast path (on native, @graniteflow/native gatedRmsNorm)', () => {
    const y = tf.tensor2d([[3, 4]]);
    const z = tf.tensor2d([[30, 30]]);
    const w = tf.tensor1d([1, 2]);
    const watch = watchFastPath(backend, gatedRmsNormKernel, 'gatedRmsNorm');
    try {
      const out = gatedRmsNorm(y, z, w, { eps: 0 });
      expect(watch.calls()).toBe(1);
      expectClose(out, [0.848528, 2 * 1.131371], { atol: 1e-5, rtol: 1e-5 });
      tf.dispose([y, z, w, out]);
    } finally {
      watch.restore();
    }
  });

  it('a hand-computed case: the gate comes before the norm', () => {
    // z = 0 would zero everything; z large makes silu(z) ≈ z. g = [3·30, 4·30] = [90, 120],
    // rms = sqrt((8100 + 14400) / 2) = 106.066 → [0.84853, 1.13137] · weight [1, 2].
    const out = gatedRmsNorm(tf.tensor2d([[3, 4]]), tf.tensor2d([[30, 30]]), tf.tensor1d([1, 2]), { eps: 0 });
    expectClose(out, [0.848528, 2 * 1.131371], { atol: 1e-5, rtol: 1e-5 });
    // Two groups of one channel: each normalises to ±1 (eps 0), times the weight.
    const grouped = gatedRmsNorm(tf.tensor2d([[3, -4]]), tf.tensor2d([[30, 30]]), tf.tensor1d([1, 2]), { eps: 0, groupSize: 1 });
    expectClose(grouped, [1, -2], { atol: 1e-5, rtol: 1e-5 });
  });

  for (const [shape, gs] of [
    [[2, 3, 8], 8],
    [[5, 12], 4],
    [[7], 7],
  ] as [number[], number][]) {
    it(`fused = reference = direct: [${shape}], groupSize ${gs}`, () => {
      const D = shape[shape.length - 1];
      const y = randn(shape);
      const z = randn(shape, 2);
      const w = randn([D]);
      const out = gatedRmsNorm(y, z, w, { eps: 1e-5, groupSize: gs });
      const [ref] = gatedRmsNormKernel.reference({ y, z, weight: w }, { eps: 1e-5, groupSize: gs });
      const n = naiveGatedNorm(f64(y), f64(z), f64(w), D, gs, 1e-5);
      expect(out.shape).toEqual(shape);
      expectClose(out, n, { atol: 1e-5, rtol: 1e-4 }, 'fused');
      expectClose(ref, n, { atol: 1e-5, rtol: 1e-4 }, 'reference');
      tf.dispose([y, z, w, out, ref]);
    });
  }

  it('does not leak tensors', async () => {
    const y = randn([3, 4]);
    const z = randn([3, 4]);
    const w = randn([4]);
    await expectNoTensorLeak(() => {
      gatedRmsNorm(y, z, w).dispose();
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(gatedRmsNorm(a, b, w)))([y, z]));
    });
    tf.dispose([y, z, w]);
  });
});
