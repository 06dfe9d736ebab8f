import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import { topKRouter, topKRouterReference } from '../src';
import { topKRouterImpl } from '../src/shared';
import { finiteDiff, randn } from './helpers';

const sig = (d: number) => 1 / (1 + Math.exp(-d));

describeBackends('topKRouter', () => {
  it('hand-computed case: top-2 of raw logits, softmax over the two only', () => {
    const { indices, weights } = topKRouter(
      tf.tensor2d([
        [1, 3, 2, 0],
        [0.5, -1, 4, 4.5],
      ]),
      2,
    );
    expect(indices.dtype).toBe('int32');
    expect(weights.dtype).toBe('float32');
    expect(indices.shape).toEqual([2, 2]);
    expect(Array.from(indices.dataSync())).toEqual([1, 2, 3, 2]);
    // softmax([3, 2]) = [σ(1), σ(-1)]; softmax([4.5, 4]) = [σ(0.5), σ(-0.5)]
    expectClose(weights, [sig(1), sig(-1), sig(0.5), sig(-0.5)], { atol: 1e-6 });
  });

  it('breaks ties by the lowest expert index, also at the k-th place', () => {
    const logits = tf.tensor2d([
      [1, 3, 2, 3], // tie for first: 1 before 3
      [5, 5, 5, 5], // all equal: 0, 1
      [4, 2, 2, 1], // tie at the k-th place: 1 wins over 2
      [0, 7, 0, 7], // ties in both places
    ]);
    const { indices, weights } = topKRouter(logits, 2);
    expect(Array.from(indices.dataSync())).toEqual([1, 3, 0, 1, 0, 1, 1, 3]);
    expectClose(weights, [0.5, 0.5, 0.5, 0.5, sig(2), sig(-2), 0.5, 0.5], { atol: 1e-6 });
    // the composed reference (tf.topk) agrees on ties
    const [rw, ri] = topKRouterReference(logits, 2);
    expect(Array.from(ri.dataSync())).toEqual(Array.from(indices.dataSync()));
    expectClose(rw, weights, { atol: 1e-6 });
  });

  it('k = 1 gives weight 1; k = E gives the full softmax in descending order', () => {
    const logits = tf.tensor2d([[0.1, -2, 3, 0.5]]);
    const one = topKRouter(logits, 1);
    expect(Array.from(one.indices.dataSync())).toEqual([2]);
    expectClose(one.weights, [1]);
    const all = topKRouter(logits, 4);
    expect(Array.from(all.indices.dataSync())).toEqual([2, 3, 0, 1]);
    const p = tf.softmax(logits).dataSync();
    expectClose(all.weights, [p[2], p[3], p[0], p[1]], { atol: 1e-6 });
  });

  it('keeps leading dims and matches the reference on random logits', () => {
    const logits = randn([2, 3, 8], 7);
    const { indices, weights } = topKRouter(logits, 3);
    expect(indices.shape).toEqual([2, 3, 3]);
    const [rw, ri] = topKRouterReference(tf.reshape(logits, [6, 8]), 3);
    expect(Array.from(indices.dataSync())).toEqual(Array.from(ri.dataSync()));
    expectClose(weights.dataSync(), rw.dataSync(), { atol: 1e-6 });
    expectClose(tf.sum(weights, -1), tf.ones([2, 3]), { atol: 1e-6 });
  });

  it('handles -Infinity logits', () => {
    const { indices, weights } = topKRouter(tf.tensor2d([[-Infinity, -Infinity, 0]]), 2);
    expect(Array.from(indices.dataSync())).toEqual([2, 0]);
    expectClose(weights, [1, 0]);
  });

  it('gradient w.r.t. logits matches autodiff of the reference and finite differences', () => {
    const logits = randn([5, 6], 3, 2);
    const proj = randn([5, 3], 4);
    const f = (l: tf.Tensor) => tf.sum(tf.mul(topKRouter(l, 3).weights, proj));
    const fRef = (l: tf.Tensor) => tf.sum(tf.mul(topKRouterReference(l, 3)[0], proj));
    const g = tf.grad(f)(logits);
    const gRef = tf.grad(fRef)(logits);
    expectClose(g, gRef, { atol: 1e-6 });
    const gv = g.dataSync();
    for (const at of [0, 7, 13, 29]) expect(Math.abs(finiteDiff(f, logits, at, 1e-3) - gv[at])).toBeLessThan(2e-3);
    // unselected experts get exactly zero
    const idx = topKRouter(logits, 3).indices.arraySync() as number[][];
    const ga = g.arraySync() as number[][];
    for (let n = 0; n < 5; n++) for (let e = 0; e < 6; e++) if (!idx[n].includes(e)) expect(ga[n][e]).toBe(0);
  });

  it('does not leak tensors (forward and gradient)', async () => {
    const logits = randn([4, 5], 1);
    await expectNoTensorLeak(() => {
      const r = topKRouter(logits, 2);
      tf.dispose([r.indices, r.weights]);
      tf.grad((l: tf.Tensor) => tf.sum(topKRouter(l, 2).weights))(logits).dispose();
    });
  });

  it('rejects bad arguments naming the argument and the shapes', () => {
    expect(() => topKRouter(tf.zeros([2, 4]), 5)).toThrow(/k must be an integer in \[1, E\] with E = 4 from logits \[2,4\], got 5/);
    expect(() => topKRouter(tf.zeros([2, 4]), 0)).toThrow(/topKRouter: k/);
    expect(() => topKRouter(tf.zeros([2, 4], 'int32'), 1)).toThrow(/logits must be float32, got int32 \(shape \[2,4\]\)/);
  });
});

describe('topKRouterImpl (backend-free)', () => {
  it('matches a sort-based oracle with ties on random integer logits', () => {
    let seed = 5;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let trial = 0; trial < 50; trial++) {
      const e = 1 + Math.floor(rand() * 9);
      const k = 1 + Math.floor(rand() * e);
      const logits = Float32Array.from({ length: e }, () => Math.floor(rand() * 4));
      const w = new Float32Array(k);
      const idx = new Int32Array(k);
      topKRouterImpl(logits, 1, e, k, w, idx);
      const expected = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
      expect(Array.from(idx)).toEqual(expected);
    }
  });
});
