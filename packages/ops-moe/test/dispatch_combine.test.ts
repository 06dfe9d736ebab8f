import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, expectNoTensorLeak, watchFastPath } from '@graniteflow/core/testing';
import { moeCombine, moeCombineReference, moeDispatch, moeDispatchReference, swiglu, swigluReference } from '../src';
import { moeSwiGLUKernel } from '../src/kernels/MoeSwiGLU';
import { finiteDiff, randn } from './helpers';

const ints = (t: tf.Tensor) => Array.from(t.dataSync());

describeBackends('moeDispatch / moeCombine / swiglu', (backend) => {
  it('dispatch: hand example, stable within an expert, empty experts get empty ranges', () => {
    // tokens: 0 → [2, 0], 1 → [0, 1], 2 → [2, 0]; expert 3 receives nothing
    const indices = tf.tensor2d(
      [
        [2, 0],
        [0, 1],
        [2, 0],
      ],
      [3, 2],
      'int32',
    );
    const { order, tokens, offsets } = moeDispatch(indices, 4);
    expect(ints(order)).toEqual([1, 2, 5, 3, 0, 4]);
    expect(ints(tokens)).toEqual([0, 1, 2, 1, 0, 2]);
    expect(ints(offsets)).toEqual([0, 3, 4, 6, 6]);
    const ref = moeDispatchReference(indices, 4);
    expect(ints(ref[0])).toEqual(ints(order));
    expect(ints(ref[1])).toEqual(ints(tokens));
    expect(ints(ref[2])).toEqual(ints(offsets));
  });

  it('dispatch: all slots on one expert keep slot order', () => {
    const { order, offsets } = moeDispatch(tf.fill([4, 1], 1, 'int32'), 3);
    expect(ints(order)).toEqual([0, 1, 2, 3]);
    expect(ints(offsets)).toEqual([0, 0, 4, 4]);
  });

  it('dispatch: rejects expert ids out of range and wrong dtypes', () => {
    expect(() => moeDispatch(tf.tensor2d([[0, 3]], [1, 2], 'int32'), 3)).toThrow(
      /indices \[1,2\] holds 3 at flat position 1, outside \[0, 3\)/,
    );
    expect(() => moeDispatch(tf.tensor2d([[0, 1]]), 3)).toThrow(/indices must be int32/);
    expect(() => moeDispatch(tf.tensor1d([0], 'int32'), 3)).toThrow(/indices must be \[N, k\] \(rank 2\), got \[1\]/);
  });

  it('combine: weighted scatter-add equals the reference, with gradients', () => {
    const indices = tf.tensor2d(
      [
        [1, 0],
        [1, 2],
        [0, 1],
      ],
      [3, 2],
      'int32',
    );
    const { order } = moeDispatch(indices, 3);
    const ys = randn([6, 5], 2);
    const w = tf.tensor2d([
      [0.7, 0.3],
      [0.5, 0.5],
      [0.9, 0.1],
    ]);
    const out = moeCombine(ys, order, w);
    expectClose(out, moeCombineReference(ys, order, w), { atol: 1e-6 });
    // by hand: token 0 = 0.7·row(slot 0) + 0.3·row(slot 1)
    const o = ints(order);
    const rows = ys.arraySync() as number[][];
    const row = (slot: number) => rows[o.indexOf(slot)];
    expectClose(
      (out.arraySync() as number[][])[0],
      row(0).map((v, c) => 0.7 * v + 0.3 * row(1)[c]),
      { atol: 1e-6 },
    );
    const proj = randn([3, 5], 3);
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(moeCombine(a, order, b), proj));
    const fr = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(moeCombineReference(a, order, b), proj));
    const [ga, gb] = tf.grads(f)([ys, w]);
    if (backend === 'cpu') {
      // autodiff of tf.gather needs UnsortedSegmentSum, which the wasm backend lacks
      const [ra, rb] = tf.grads(fr)([ys, w]);
      expectClose(ga, ra, { atol: 1e-6 });
      expectClose(gb, rb, { atol: 1e-5 });
    }
    for (const at of [0, 9, 29]) expect(Math.abs(finiteDiff((a) => f(a, w), ys, at) - ga.dataSync()[at])).toBeLessThan(1e-3);
    for (const at of [0, 3, 5]) expect(Math.abs(finiteDiff((b) => f(ys, b), w, at) - gb.dataSync()[at])).toBeLessThan(1e-3);
  });

  it('combine: shape errors name both arguments and both shapes', () => {
    expect(() => moeCombine(tf.zeros([5, 4]), tf.zeros([6], 'int32'), tf.zeros([3, 2]))).toThrow(
      /moeCombine: expertOutputs \[5,4\] does not match weights \[3,2\]/,
    );
  });

  it('swiglu: halves (not interleaved), matches the reference and its gradient', () => {
    const a = tf.tensor2d([[0, 1, 5, 2]]);
    expectClose(swiglu(a), [0, 2 / (1 + Math.exp(-1))], { atol: 1e-6 });
    const x = randn([2, 3, 8], 9, 3);
    expectClose(swiglu(x), swigluReference(x), { atol: 1e-5 });
    const g = tf.grad((v: tf.Tensor) => tf.sum(tf.square(swiglu(v))))(x);
    const gr = tf.grad((v: tf.Tensor) => tf.sum(tf.square(swigluReference(v))))(x);
    expectClose(g, gr, { atol: 1e-4, rtol: 1e-4 });
    expect(() => swiglu(tf.zeros([2, 3]))).toThrow(/a must be \[\.\.\., 2I\] with an even last axis, got \[2,3\]/);
  });

  it('runs its fast path (on native, @graniteflow/native swiglu)', () => {
    // Two rows of H-Micro's shared-MLP width plus a ragged one, and gates far into both tails.
    const x = randn([3, 2 * 8195], 11, 6);
    const a = tf.tensor2d([[1e4, -1e4, 0, -1, 2, 3, 4, 5]]);
    const watch = watchFastPath(backend, moeSwiGLUKernel, 'swiglu');
    try {
      const out = swiglu(x);
      const extremes = swiglu(a);
      expect(watch.calls()).toBe(2);
      expect(out.shape).toEqual([3, 8195]);
      expectClose(out, swigluReference(x), { atol: 1e-5, rtol: 1e-5 });
      // silu(1e4) = 1e4, silu(-1e4) = -0, silu(0) = 0, silu(-1) = -1 / (1 + e).
      expectClose(extremes, [1e4 * 2, 0, 0, -5 / (1 + Math.E)], { atol: 1e-6, rtol: 1e-6 });
      tf.dispose([x, a, out, extremes]);
    } finally {
      watch.restore();
    }
  });

  it('does not leak tensors', async () => {
    const indices = tf.tensor2d(
      [
        [1, 0],
        [1, 2],
      ],
      [2, 2],
      'int32',
    );
    const ys = randn([4, 3], 1);
    const w = tf.tensor2d([
      [0.5, 0.5],
      [0.2, 0.8],
    ]);
    await expectNoTensorLeak(() => {
      const d = moeDispatch(indices, 3);
      const out = moeCombine(ys, d.order, w);
      tf.dispose([d.order, d.tokens, d.offsets, out]);
      tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.tidy(() => {
          const dd = moeDispatch(indices, 3);
          return tf.sum(moeCombine(a, dd.order, b));
        }),
      )([ys, w]).forEach((g) => g.dispose());
    });
  });
});
