import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import { loadBalancingLoss, SharedMLP } from '../src';
import { finiteDiff, randn } from './helpers';

describeBackends('SharedMLP and loadBalancingLoss', () => {
  it('SharedMLP: silu(a[:S]) ⊙ a[S:] then output_linear, keys as in the checkpoint', () => {
    const mlp = new SharedMLP({ hiddenSize: 4, sharedIntermediateSize: 3 });
    expect([...mlp.namedParameters('model.layers.0.shared_mlp')].map(([n, p]) => [n, p.shape])).toEqual([
      ['model.layers.0.shared_mlp.input_linear.weight', [6, 4]],
      ['model.layers.0.shared_mlp.output_linear.weight', [4, 3]],
    ]);
    const w1 = randn([6, 4], 1);
    const w2 = randn([4, 3], 2);
    // The module takes ownership of what it loads: give it copies.
    mlp.loadStateDict({ 'input_linear.weight': tf.clone(w1), 'output_linear.weight': tf.clone(w2) });
    const x = randn([2, 5, 4], 3);
    const y = mlp.forward(x);
    expect(y.shape).toEqual([2, 5, 4]);
    const a = tf.matMul(tf.reshape(x, [10, 4]), w1, false, true);
    const g = tf.slice(a, [0, 0], [10, 3]);
    const u = tf.slice(a, [0, 3], [10, 3]);
    const expected = tf.reshape(tf.matMul(tf.mul(tf.mul(g, tf.sigmoid(g)), u), w2, false, true), [2, 5, 4]);
    expectClose(y, expected, { atol: 1e-5 });
    expect(() => mlp.forward(tf.zeros([2, 3]))).toThrow(
      /SharedMLP: x must be \[\.\.\., 4\] to match input_linear\.weight \[6,4\], got \[2,3\]/,
    );
    mlp.dispose();
  });

  it('loadBalancingLoss: uniform router gives k; a hand-computed skewed case', () => {
    expectClose(loadBalancingLoss([tf.zeros([4, 8]), tf.zeros([3, 8])], 8, 2), [2], { atol: 1e-6 });
    // E = 2, k = 1; two tokens, both pick expert 0. p(token 0) = σ(1), σ(-1); token 1 = σ(2), σ(-2).
    // f = [1, 0]; P_0 = (σ(1) + σ(2)) / 2; loss = 2 · P_0
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const loss = loadBalancingLoss(
      [
        tf.tensor2d([
          [1, 0],
          [2, 0],
        ]),
      ],
      2,
      1,
    );
    expectClose(loss, [sig(1) + sig(2)], { atol: 1e-6 });
    // with layers concatenated: the second layer routes to expert 1
    const two = loadBalancingLoss([tf.tensor2d([[1, 0]]), tf.tensor2d([[0, 3]])], 2, 1);
    // f = [0.5, 0.5]; P = mean([σ(1), σ(-1)], [σ(-3), σ(3)]); loss = 2·0.5·(P0 + P1) = 1
    expectClose(two, [1], { atol: 1e-6 });
  });

  it('loadBalancingLoss: gradient w.r.t. the logits matches finite differences', () => {
    const logits = randn([6, 5], 4);
    const f = (l: tf.Tensor) => loadBalancingLoss([l], 5, 2);
    const g = tf.grad(f)(logits).dataSync();
    for (const at of [0, 11, 29]) expect(Math.abs(finiteDiff(f, logits, at, 1e-3) - g[at])).toBeLessThan(2e-3);
  });

  it('loadBalancingLoss: errors name the layer and both shapes; no leaks', async () => {
    expect(() => loadBalancingLoss([tf.zeros([2, 4]), tf.zeros([2, 5])], 4, 2)).toThrow(
      /routerLogits\[1\] \[2,5\] does not match routerLogits\[0\] \[2,4\]/,
    );
    const l = randn([3, 4], 5);
    await expectNoTensorLeak(() => {
      loadBalancingLoss([l, l], 4, 2).dispose();
      tf.grad((v: tf.Tensor) => loadBalancingLoss([v], 4, 2))(l).dispose();
    });
  });
});
