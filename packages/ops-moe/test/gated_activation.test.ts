import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import { GATED_ACTIVATIONS, gatedActivation, SharedMLP, type GatedActivation } from '../src';
import { randn } from './helpers';

/** erf by Abramowitz–Stegun 7.1.26 refined with a Taylor series near 0 (|error| < 1e-9 here). */
function erf64(x: number): number {
  if (Math.abs(x) < 2) {
    // Maclaurin series: 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let sum = 0;
    let term = x;
    for (let n = 0; n < 60; n++) {
      sum += term / (2 * n + 1);
      term *= (-x * x) / (n + 1);
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // Continued fraction of erfc for larger |x|.
  const ax = Math.abs(x);
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

/** The activations by their definitions, in float64. */
const DEFINITIONS: Record<GatedActivation, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => 0.5 * x * (1 + erf64(x / Math.SQRT2)),
  gelu_pytorch_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  gelu_new: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  relu: (x) => Math.max(0, x),
};

describeBackends('gatedActivation', () => {
  for (const activation of GATED_ACTIVATIONS) {
    it(`${activation}: act(a[..., :I]) ⊙ a[..., I:] equals its float64 definition`, async () => {
      const a = tf.tidy(() => tf.mul(randn([3, 2, 10], 7), 2.5));
      const values = a.dataSync();
      const expected = new Float32Array(3 * 2 * 5);
      for (let r = 0; r < 6; r++) {
        for (let i = 0; i < 5; i++) expected[r * 5 + i] = DEFINITIONS[activation](values[r * 10 + i]) * values[r * 10 + 5 + i];
      }
      const want = tf.tensor3d(expected, [3, 2, 5]);
      await expectNoTensorLeak(() => {
        const out = gatedActivation(a, activation);
        expectClose(out, want, { atol: 2e-5, rtol: 2e-5 });
        out.dispose();
      });
      tf.dispose([a, want]);
    });
  }

  it('the activations differ from each other (a wrong branch would not pass unseen)', () => {
    const a = tf.tensor2d([[-1.5, 0.7, 2, 2]]);
    const outs = GATED_ACTIVATIONS.filter((n) => n !== 'gelu_new').map((n) => gatedActivation(a, n).dataSync()[0]);
    expect(new Set(outs.map((v) => v.toFixed(4))).size).toBe(outs.length);
  });

  it('SharedMLP runs the configured activation and refuses an unknown one by name', () => {
    const w1 = randn([6, 4], 1);
    const w2 = randn([4, 3], 2);
    const x = randn([2, 5, 4], 3);
    const mlp = new SharedMLP({ hiddenSize: 4, sharedIntermediateSize: 3, activation: 'gelu' });
    mlp.loadStateDict({ 'input_linear.weight': tf.clone(w1), 'output_linear.weight': tf.clone(w2) });
    const a = tf.matMul(tf.reshape(x, [10, 4]), w1, false, true).dataSync();
    const hidden = new Float32Array(30);
    for (let r = 0; r < 10; r++) for (let i = 0; i < 3; i++) hidden[r * 3 + i] = DEFINITIONS.gelu(a[r * 6 + i]) * a[r * 6 + 3 + i];
    const expected = tf.reshape(tf.matMul(tf.tensor2d(hidden, [10, 3]), w2, false, true), [2, 5, 4]);
    expectClose(mlp.forward(x), expected, { atol: 1e-5, rtol: 1e-5 });
    expect(() => new SharedMLP({ hiddenSize: 4, sharedIntermediateSize: 3, activation: 'tanh' as GatedActivation })).toThrow(
      'SharedMLP: config.activation must be one of silu, gelu, gelu_pytorch_tanh, gelu_new, relu, got tanh.',
    );
    mlp.dispose();
  });
});
