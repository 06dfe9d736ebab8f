import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { defaultBackendName, initBackend, isBackendAvailable, nativeAddon, nativeUnavailableReason } from '../src';
import { expectClose, expectNoTensorLeak } from '../src/testing';
import { simdCounters } from '../src/kernels/simd_module';
import { PAD_COUNTER, SLICE_COUNTER } from '../src/native/block_copy_kernels';

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
    const off = runFresh(`console.log(core.defaultBackendName());\nawait core.initBackend('native');`, {
      GRANITEFLOW_NATIVE: '0',
      GRANITEFLOW_BACKEND: '',
    });
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
        const x = tf.tensor(
          Array.from({ length: 30 }, (_, i) => i),
          shape,
          dtype,
        );
        for (const [axis, sizes] of [
          [0, [1, 1]],
          [1, [1, 2]],
          [2, [2, 0, 3]],
          [-1, [4, 1]],
        ] as [number, number[]][]) {
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

    it('slices and pads by contiguous runs (its own Slice and PadV2): every box of a 4-D tensor, float32, int32 and bool', () => {
      const shape = [2, 3, 4, 5];
      const strides = [60, 20, 5, 1];
      const at = (idx: number[]) => idx.reduce((a, v, d) => a + v * strides[d], 0);
      /** Every index of a box, row-major. */
      const indices = (box: number[]): number[][] =>
        box.reduce<number[][]>((acc, n) => acc.flatMap((p) => Array.from({ length: n }, (_, i) => [...p, i])), [[]]);
      const counts = () => ({ slice: simdCounters()[SLICE_COUNTER] ?? 0, pad: simdCounters()[PAD_COUNTER] ?? 0 });
      const before = counts();
      let runs = 0;
      for (const dtype of ['float32', 'int32', 'bool'] as const) {
        const flat = Array.from({ length: 120 }, (_, i) => (dtype === 'bool' ? i % 3 === 0 : i - 7)).map(Number);
        const x = tf.tensor(flat, shape, dtype);
        for (const [begin, size] of [
          [
            [0, 0, 0, 0],
            [2, 3, 4, 5],
          ],
          [
            [1, 1, 2, 3],
            [1, 2, 2, 2],
          ],
          [
            [0, 2, 0, 1],
            [-1, 1, -1, 3],
          ],
          [
            [1, 0, 3, 0],
            [1, 3, 1, 5],
          ],
          [
            [0, 0, 0, 0],
            [2, 0, 4, 5],
          ],
        ] as [number[], number[]][]) {
          const got = tf.slice(x, begin, size);
          const box = size.map((n, d) => (n === -1 ? shape[d] - begin[d] : n));
          expect(got.shape).toEqual(box);
          expect(Array.from(got.dataSync())).toEqual(indices(box).map((idx) => flat[at(idx.map((v, d) => v + begin[d]))]));
          got.dispose();
          runs++;
        }
        for (const [paddings, value] of [
          [
            [
              [0, 0],
              [1, 0],
              [0, 2],
              [3, 1],
            ],
            0,
          ],
          [
            [
              [7, 0],
              [0, 0],
              [0, 0],
              [0, 0],
            ],
            0,
          ],
          [
            [
              [1, 1],
              [1, 1],
              [1, 1],
              [1, 1],
            ],
            dtype === 'float32' ? -2.5 : 1,
          ],
        ] as [[number, number][], number][]) {
          const got = tf.pad(x, paddings, value);
          const padded = shape.map((n, d) => paddings[d][0] + n + paddings[d][1]);
          expect(got.shape).toEqual(padded);
          const inside = (idx: number[]) => idx.every((v, d) => v >= paddings[d][0] && v < paddings[d][0] + shape[d]);
          const expected = indices(padded).map((idx) => (inside(idx) ? flat[at(idx.map((v, d) => v - paddings[d][0]))] : value));
          expect(Array.from(got.dataSync())).toEqual(expected);
          got.dispose();
          runs++;
        }
        x.dispose();
      }
      const after = counts();
      expect(after.slice - before.slice + after.pad - before.pad).toBe(runs);
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
      [
        [3, 20],
        [3, 20],
      ],
      [[2, 3, 20], [20]],
      [
        [2, 3, 20],
        [2, 3, 1],
      ],
      [[1], [4, 17]],
      [
        [3, 1, 16],
        [1, 5, 16],
      ],
      [
        [2, 1, 3, 16],
        [4, 1, 1],
      ],
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
      const pa = pad(as),
        pb = pad(bs);
      const shape = pa.map((d, i) => Math.max(d, pb[i]));
      // The numpy rule from the definition: each operand's index is the output's, 0 on its size-1 axes.
      const flat = (s: number[], idx: number[]) => idx.reduce((acc, v, d) => acc * s[d] + (s[d] === 1 ? 0 : v), 0);
      const a = tf.tensor(av, as),
        b = tf.tensor(bv, bs);
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
      const a = tf.tensor2d([
        [1, 2],
        [3, 4],
      ]);
      const b = tf.tensor2d([
        [5, 6],
        [7, 8],
      ]);
      const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y)))([a, b]);
      expectClose(ga, [11, 15, 11, 15]);
      expectClose(gb, [4, 4, 6, 6]);
      await expectNoTensorLeak(() => tf.dispose(tf.matMul(a, b)));
      tf.dispose([a, b, ga, gb]);
    });
  });
});
