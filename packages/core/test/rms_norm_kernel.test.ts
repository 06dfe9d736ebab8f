import * as tf from '@tensorflow/tfjs-core';
import { RmsNorm, rmsNorm, rmsNormReference } from '../src';
import { describeBackends, expectClose, expectNoTensorLeak, randomFloats, watchFastPath } from '../src/testing';

/** float64 definition, independent of both implementations. */
function naive(x: Float32Array, w: Float32Array, eps: number): Float64Array {
  const dim = w.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += dim) {
    let s = 0;
    for (let i = 0; i < dim; i++) s += x[r + i] * x[r + i];
    const k = 1 / Math.sqrt(s / dim + eps);
    for (let i = 0; i < dim; i++) y[r + i] = x[r + i] * k * w[i];
  }
  return y;
}

const CASES: [number[], number][] = [
  [[1, 1, 2048], 1e-5],
  [[3, 7], 1e-6],
  [[2, 3, 5], 0.5],
  [[4, 1], 1e-5],
];

describeBackends('rmsNorm (fused kernel)', (backend) => {
  for (const [shape, eps] of CASES) {
    it(`runs fused and equals the float64 definition and the composed reference: [${shape}], eps ${eps}`, () => {
      const dim = shape[shape.length - 1];
      const xs = randomFloats(
        shape.reduce((a, b) => a * b, 1),
        11,
        3,
      );
      const ws = randomFloats(dim, 12, 2);
      const x = tf.tensor(xs, shape);
      const w = tf.tensor1d(ws);
      const watch = watchFastPath(backend, RmsNorm);
      try {
        const y = rmsNorm(x, w, eps);
        expect(watch.calls()).toBe(1);
        expect(y.shape).toEqual(shape);
        expectClose(y, naive(xs, ws, eps), { atol: 1e-5, rtol: 1e-5 }, 'fused vs float64');
        const r = rmsNormReference(x, w, eps);
        expectClose(y, r, { atol: 1e-5, rtol: 1e-5 }, 'fused vs composed');
        tf.dispose([y, r]);
      } finally {
        watch.restore();
        tf.dispose([x, w]);
      }
    });
  }

  it('differentiates like the composed reference (x and weight)', () => {
    const x = tf.tensor(randomFloats(2 * 6, 13, 2), [2, 6]);
    const w = tf.tensor1d(randomFloats(6, 14, 2));
    const up = tf.tensor(randomFloats(2 * 6, 15, 1), [2, 6]);
    const loss = (f: typeof rmsNorm) => (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b, 1e-5), up));
    const [gx, gw] = tf.grads(loss(rmsNorm))([x, w]);
    const [rx, rw] = tf.grads(loss(rmsNormReference))([x, w]);
    expectClose(gx, rx, { atol: 1e-5, rtol: 1e-5 }, 'dx');
    expectClose(gw, rw, { atol: 1e-5, rtol: 1e-5 }, 'dweight');
    tf.dispose([x, w, up, gx, gw, rx, rw]);
  });

  it('does not leak', async () => {
    const x = tf.ones([2, 4]);
    const w = tf.ones([4]);
    await expectNoTensorLeak(() => rmsNorm(x, w, 1e-5).dispose());
    tf.dispose([x, w]);
  });

  it('rejects a weight that is not [dim], a scalar x and non-float32 inputs, naming them', () => {
    const x = tf.ones([2, 4]);
    expect(() => rmsNorm(x, tf.ones([3]), 1e-5)).toThrow('rmsNorm: weight must be [4] (the last axis of x [2,4]), got [3].');
    expect(() => rmsNorm(tf.scalar(1), tf.ones([1]), 1e-5)).toThrow('rmsNorm: x must have at least one axis');
    expect(() => rmsNorm(tf.ones([2, 4], 'int32'), tf.ones([4]), 1e-5)).toThrow(
      'rmsNorm expects float32 x and weight, got int32 and float32.',
    );
    x.dispose();
  });
});
