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
