import * as tf from '@tensorflow/tfjs-core';
import { simdCounters } from '../src';
import { TRANSPOSED_MATMUL_COUNTER } from '../src/kernels/wasm_transposed_matmul';
import { describeBackends, expectClose, randomFloats } from '../src/testing';

/** [batch, rows, cols] row-major product in float64: the oracle. */
function product(a: Float32Array, b: Float32Array, batch: number, m: number, k: number, n: number, ta: boolean, tb: boolean): number[] {
  const out: number[] = [];
  for (let p = 0; p < batch; p++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const av = ta ? a[p * k * m + q * m + i] : a[p * m * k + i * k + q];
          const bv = tb ? b[p * n * k + j * k + q] : b[p * k * n + q * n + j];
          s += av * bv;
        }
        out.push(s);
      }
    }
  }
  return out;
}

describeBackends('matMul with transposed operands', (backend) => {
  it.each([
    [false, true],
    [true, false],
    [true, true],
  ])('transposeA %s, transposeB %s, 2-D and batched, equals the float64 product', (ta, tb) => {
    const before = simdCounters()[TRANSPOSED_MATMUL_COUNTER] ?? 0;
    for (const [batch, m, k, n] of [
      [1, 7, 5, 3],
      [3, 4, 6, 9],
    ]) {
      const av = randomFloats(batch * m * k, m + k);
      const bv = randomFloats(batch * k * n, n + k);
      const aShape = ta ? [k, m] : [m, k];
      const bShape = tb ? [n, k] : [k, n];
      const a = batch === 1 ? tf.tensor(av, aShape) : tf.tensor(av, [batch, ...aShape]);
      const b = batch === 1 ? tf.tensor(bv, bShape) : tf.tensor(bv, [batch, ...bShape]);
      const live = tf.memory().numTensors;
      const c = tf.matMul(a, b, ta, tb);
      expect(tf.memory().numTensors).toBe(live + 1); // the transposed copies are freed
      expectClose(c, product(av, bv, batch, m, k, n, ta, tb), { atol: 1e-5 });
      tf.dispose([a, b, c]);
    }
    const ran = (simdCounters()[TRANSPOSED_MATMUL_COUNTER] ?? 0) - before;
    expect(ran).toBe(backend === 'wasm' ? 2 : 0);
  });
});
