import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { defaultBackendName, initBackend, isBackendAvailable, nativeAddon, nativeUnavailableReason } from '../src';
import { expectClose, expectNoTensorLeak } from '../src/testing';

// In this repository nx builds @graniteflow/native before core's tests, so the native backend must
// be there; a run with GRANITEFLOW_NATIVE=0 checks the fallback instead.
const nativeOff = process.env.GRANITEFLOW_NATIVE === '0';

/** Runs a few lines against core's sources in a fresh Node process with `env`. */
function runFresh(code: string, env: Record<string, string>): { stdout: string; stderr: string; status: number | null } {
  const tsx = require.resolve('tsx/cli');
  const src = path.resolve(__dirname, '..', 'src');
  const script = `const core = require(${JSON.stringify(src)});\n(async () => {\n${code}\n})().catch((e) => { console.log('ERR ' + e.message); });`;
  const r = spawnSync(process.execPath, [tsx, '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

describe('the native backend', () => {
  it('is the default when @graniteflow/native loads, and wasm when it is switched off', () => {
    if (nativeOff) {
      expect(isBackendAvailable('native')).toBe(false);
      return;
    }
    expect(nativeUnavailableReason()).toBeUndefined();
    expect(isBackendAvailable('native')).toBe(true);
    const saved = process.env.GRANITEFLOW_BACKEND;
    delete process.env.GRANITEFLOW_BACKEND;
    try {
      expect(defaultBackendName()).toBe('native');
    } finally {
      if (saved !== undefined) process.env.GRANITEFLOW_BACKEND = saved;
    }
    const off = runFresh(
      `console.log(core.defaultBackendName());\nawait core.initBackend('native');`,
      { GRANITEFLOW_NATIVE: '0', GRANITEFLOW_BACKEND: '' },
    );
    expect(off.stdout).toContain('wasm\n');
    expect(off.stdout).toMatch(/ERR The "native" backend is not available: switched off with GRANITEFLOW_NATIVE=0/);
  });

  (nativeOff ? describe.skip : describe)('kernels', () => {
    beforeAll(async () => {
      await initBackend('native');
    });

    it('runs stock ops through the cpu kernels', () => {
      const y = tf.tidy(() => tf.softmax(tf.add(tf.tensor2d([[1, 2, 3]]), 1)));
      expectClose(y, [0.09003057, 0.24472847, 0.66524096]);
      y.dispose();
    });

    it.each([
      // a shape, b shape, transposeA, transposeB
      [[3, 5], [5, 4], false, false],
      [[5, 3], [5, 4], true, false],
      [[3, 5], [4, 5], false, true],
      [[5, 3], [4, 5], true, true],
      [[2, 3, 5], [2, 5, 4], false, false],
      [[2, 3, 5], [1, 5, 4], false, false], // b broadcast over the batch
      [[1, 3, 5], [4, 5, 7], false, false], // a broadcast
      [[1, 64], [64, 130], false, false], // a gemv
    ] as const)('matMul %j × %j (transposeA %s, transposeB %s) runs the native GEMM and matches a float64 product', (as, bs, ta, tb) => {
      const addon = nativeAddon()!;
      const before = Object.values(addon.counters().gemmF32).reduce((x, y) => x + y, 0);
      const size = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);
      const av = Float32Array.from({ length: size(as) }, (_, i) => Math.sin(i + 1));
      const bv = Float32Array.from({ length: size(bs) }, (_, i) => Math.cos(2 * i + 1));
      const a = tf.tensor(av, [...as]);
      const b = tf.tensor(bv, [...bs]);
      const c = tf.matMul(a, b, ta, tb);
      // The float64 oracle, element by element from the definitions.
      const [m, k] = ta ? [as[as.length - 1], as[as.length - 2]] : [as[as.length - 2], as[as.length - 1]];
      const n = tb ? bs[bs.length - 2] : bs[bs.length - 1];
      const batchA = size(as.slice(0, -2));
      const batchB = size(bs.slice(0, -2));
      const batch = Math.max(batchA, batchB);
      const expected: number[] = [];
      for (let q = 0; q < batch; q++) {
        const ao = (q % batchA) * m * k;
        const bo = (q % batchB) * k * n;
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let acc = 0;
            for (let t = 0; t < k; t++) {
              acc += av[ao + (ta ? t * m + i : i * k + t)] * bv[bo + (tb ? j * k + t : t * n + j)];
            }
            expected.push(acc);
          }
        }
      }
      expect(c.shape).toEqual([...(as.length === 3 || bs.length === 3 ? [batch] : []), m, n]);
      expectClose(c, expected, { atol: 1e-4 });
      const after = Object.values(addon.counters().gemmF32).reduce((x, y) => x + y, 0);
      expect(after).toBeGreaterThan(before);
      tf.dispose([a, b, c]);
    });

    it('splits with its own SplitV: every part of every axis, float32 and int32', () => {
      expect(tf.getKernel(tf.SplitV, 'native')!.kernelFunc).not.toBe(tf.getKernel(tf.SplitV, 'cpu')!.kernelFunc);
      const shape = [2, 3, 5];
      const at = (i: number, j: number, k: number) => (i * 3 + j) * 5 + k;
      for (const dtype of ['float32', 'int32'] as const) {
        const x = tf.tensor(Array.from({ length: 30 }, (_, i) => i), shape, dtype);
        for (const [axis, sizes] of [[0, [1, 1]], [1, [1, 2]], [2, [2, 0, 3]], [-1, [4, 1]]] as [number, number[]][]) {
          const parts = tf.split(x, sizes, axis);
          const ax = axis < 0 ? axis + 3 : axis;
          let start = 0;
          parts.forEach((part, p) => {
            const want = shape.slice();
            want[ax] = sizes[p];
            expect(part.shape).toEqual(want);
            expect(part.dtype).toBe(dtype);
            const expected: number[] = [];
            for (let i = 0; i < want[0]; i++)
              for (let j = 0; j < want[1]; j++)
                for (let k = 0; k < want[2]; k++) {
                  const idx = [i, j, k];
                  idx[ax] += start;
                  expected.push(at(idx[0], idx[1], idx[2]));
                }
            expect(Array.from(part.dataSync())).toEqual(expected);
            start += sizes[p];
          });
          tf.dispose(parts);
        }
        x.dispose();
      }
    });

    it('computes softmax over the last axis in one pass: equal to exp(x − max) / Σ in float64, -Infinity and NaN rows as tfjs', () => {
      expect(tf.getKernel(tf.Softmax, 'native')!.kernelFunc).not.toBe(tf.getKernel(tf.Softmax, 'cpu')!.kernelFunc);
      const rows = [
        [1, 2, 3, 4],
        [-Infinity, 0, -Infinity, 5],
        [80, 85, -90, 88],
        [0, 0, 0, 0],
        [-Infinity, -Infinity, -Infinity, -Infinity],
        [1, NaN, 2, 3],
      ];
      const y = tf.softmax(tf.tensor3d(rows.flat(), [2, 3, 4]));
      const expected = rows.flatMap((r) => {
        const m = r.some(Number.isNaN) ? NaN : Math.max(...r);
        const e = r.map((v) => Math.exp(v - m));
        const sum = e.reduce((a, b) => a + b, 0);
        return e.map((v) => v / sum);
      });
      const got = Array.from(y.dataSync());
      got.forEach((v, i) => {
        if (Number.isNaN(expected[i])) expect(v).toBeNaN();
        else expect(Math.abs(v - expected[i])).toBeLessThanOrEqual(1e-7 + 1e-6 * expected[i]);
      });
      y.dispose();
    });

    it.each([
      // a shape, b shape: same shape, a row vector, a column, a scalar, both broadcasting, rank 4
      [[3, 20], [3, 20]],
      [[2, 3, 20], [20]],
      [[2, 3, 20], [2, 3, 1]],
      [[1], [4, 17]],
      [[3, 1, 16], [1, 5, 16]],
      [[2, 1, 3, 16], [4, 1, 1]],
      [[2, 3], [3]], // rows shorter than 16: the cpu kernel
    ])('Add, Sub, Multiply and RealDiv of %j and %j broadcast as numpy, element for element', (as, bs) => {
      for (const name of [tf.Add, tf.Sub, tf.Multiply, tf.RealDiv]) {
        expect(tf.getKernel(name, 'native')!.kernelFunc).not.toBe(tf.getKernel(name, 'cpu')!.kernelFunc);
      }
      const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
      const av = Float32Array.from({ length: size(as) }, (_, i) => Math.sin(i + 1) * 3);
      const bv = Float32Array.from({ length: size(bs) }, (_, i) => Math.cos(i) + 1.5);
      const rank = Math.max(as.length, bs.length);
      const pad = (s: number[]) => [...new Array<number>(rank - s.length).fill(1), ...s];
      const pa = pad(as), pb = pad(bs);
      const shape = pa.map((d, i) => Math.max(d, pb[i]));
      // The numpy rule from the definition: each operand's index is the output's, 0 on its size-1 axes.
      const flat = (s: number[], idx: number[]) => idx.reduce((acc, v, d) => acc * s[d] + (s[d] === 1 ? 0 : v), 0);
      const a = tf.tensor(av, as), b = tf.tensor(bv, bs);
      const ops: [(x: tf.Tensor, y: tf.Tensor) => tf.Tensor, (x: number, y: number) => number][] = [
        [tf.add, (x, y) => x + y],
        [tf.sub, (x, y) => x - y],
        [tf.mul, (x, y) => x * y],
        [tf.div, (x, y) => x / y],
      ];
      for (const [op, f] of ops) {
        const c = op(a, b);
        expect(c.shape).toEqual(shape);
        const expected: number[] = [];
        for (let e = 0; e < size(shape); e++) {
          const idx: number[] = [];
          for (let d = rank - 1, r = e; d >= 0; d--) {
            idx.unshift(r % shape[d]);
            r = Math.floor(r / shape[d]);
          }
          expected.push(Math.fround(f(av[flat(pa, idx)], bv[flat(pb, idx)])));
        }
        expect(Array.from(c.dataSync())).toEqual(expected);
        c.dispose();
      }
      tf.dispose([a, b]);
    });

    it('differentiates through the native matMul and leaks nothing', async () => {
      const a = tf.tensor2d([[1, 2], [3, 4]]);
      const b = tf.tensor2d([[5, 6], [7, 8]]);
      const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y)))([a, b]);
      expectClose(ga, [11, 15, 11, 15]);
      expectClose(gb, [4, 4, 6, 6]);
      await expectNoTensorLeak(() => tf.dispose(tf.matMul(a, b)));
      tf.dispose([a, b, ga, gb]);
    });
  });
});
