import * as tf from '@tensorflow/tfjs-core';
import { setSimdEnabled, ShapeError, simdCounters } from '@graniteflow/core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import {
  EXPERT_GEMV_SIMD_CALL,
  moeExperts,
  moeExpertsReference,
  sparseMoe,
  sparseMoeReference,
  SparseMoE,
  topKRouter,
  type MoeExpertsPath,
  type SparseMoEConfig,
} from '../src';
import { finiteDiff, makeMoe, randn } from './helpers';

const PATHS: MoeExpertsPath[] = ['auto', 'grouped', 'gemv'];
const TOL = { atol: 2e-5, rtol: 1e-4 };

function weightsOf(moe: SparseMoE): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return [moe.router.layer.weight.checkpointValue(), moe.input_linear.weight.value, moe.output_linear.weight.value];
}

describeBackends('sparse MoE block', (backend) => {
  const cases: [string, SparseMoEConfig, number[]][] = [
    ['small, tails (H 12, I 6)', { hiddenSize: 12, intermediateSize: 6, numExperts: 5, topK: 2 }, [7, 12]],
    ['SIMD widths (H 32, I 16)', { hiddenSize: 32, intermediateSize: 16, numExperts: 8, topK: 3 }, [9, 32]],
    ['k = 1', { hiddenSize: 16, intermediateSize: 8, numExperts: 6, topK: 1 }, [5, 16]],
    ['k = E', { hiddenSize: 16, intermediateSize: 8, numExperts: 4, topK: 4 }, [5, 16]],
    ['B > 1 leading dims', { hiddenSize: 16, intermediateSize: 8, numExperts: 6, topK: 2 }, [2, 3, 16]],
    ['one token (decode)', { hiddenSize: 48, intermediateSize: 32, numExperts: 8, topK: 2 }, [1, 48]],
  ];
  for (const [label, config, shape] of cases) {
    it(`sparse equals the dense reference on every path: ${label}`, () => {
      const moe = makeMoe(config, 11);
      const x = randn(shape, 12);
      const dense = moe.forwardDense(x);
      for (const path of PATHS) expectClose(moe.forward(x, { path }), dense, TOL, `${path} path`);
      // and the naive per-slot reference of the experts alone
      const flat = tf.reshape(x, [-1, config.hiddenSize]);
      const [wr, w1, w2] = weightsOf(moe);
      const { indices, weights } = topKRouter(tf.matMul(flat, wr, false, true), config.topK);
      expectClose(moeExperts(flat, w1, w2, indices, weights), moeExpertsReference(flat, w1, w2, indices, weights), TOL);
      moe.dispose();
    });
  }

  it('experts with no token and all tokens on one expert', () => {
    const config = { hiddenSize: 16, intermediateSize: 8, numExperts: 6, topK: 1 };
    const moe = makeMoe(config, 3);
    // hand-set router: expert 4 wins for every positive x, the rest never get a token
    const router = tf.tidy(() => tf.concat([tf.zeros([4, 16]), tf.ones([1, 16]), tf.fill([1, 16], -1)]));
    moe.router.layer.weight.assign(router);
    const x = tf.abs(randn([6, 16], 4));
    const { routerLogits, output } = moe.forwardWithRouterLogits(x);
    const { indices, weights } = topKRouter(routerLogits, 1);
    expect(Array.from(indices.dataSync())).toEqual([4, 4, 4, 4, 4, 4]);
    expectClose(weights, tf.ones([6, 1]));
    expectClose(output, moe.forwardDense(x), TOL);
    for (const path of PATHS) expectClose(moe.forward(x, { path }), moe.forwardDense(x), TOL, path);
    // by hand: the output is expert 4 applied to each token
    const w1 = tf.squeeze(tf.slice(moe.input_linear.weight.value, [4, 0, 0], [1, 16, 16]), [0]);
    const w2 = tf.squeeze(tf.slice(moe.output_linear.weight.value, [4, 0, 0], [1, 16, 8]), [0]);
    const a = tf.matMul(x, w1, false, true);
    const [g, u] = tf.split(a, 2, 1);
    const byHand = tf.matMul(tf.mul(tf.mul(g, tf.sigmoid(g)), u), w2, false, true);
    expectClose(output, byHand, TOL);
    moe.dispose();
  });

  it('hand-computed block: two experts, k = 1, scalar weights', () => {
    // H = 2, I = 1. Router picks expert 0 for x₀ > x₁, else expert 1.
    const moe = new SparseMoE({ hiddenSize: 2, intermediateSize: 1, numExperts: 2, topK: 1 });
    moe.loadStateDict({
      'router.layer.weight': tf.tensor2d([
        [1, 0],
        [0, 1],
      ]),
      // expert 0: gate = x₀, up = 1·x₁ ; expert 1: gate = x₁, up = 2
      'input_linear.weight': tf.tensor3d([
        [
          [1, 0],
          [0, 1],
        ],
        [
          [0, 1],
          [0, 0],
        ],
      ]),
      'output_linear.weight': tf.tensor3d([
        [[1], [0]],
        [[0], [1]],
      ]),
    });
    const x = tf.tensor2d([
      [2, 1],
      [0, 3],
    ]);
    const silu = (v: number) => v / (1 + Math.exp(-v));
    // token 0 → expert 0: act = silu(2)·1 → out [act, 0]; token 1 → expert 1: act = silu(3)·0 → 0
    for (const path of PATHS) expectClose(moe.forward(x, { path }), [silu(2), 0, 0, 0], { atol: 1e-6 }, path);
    moe.dispose();
  });

  it('gradients of the sparse path (x, router, both expert weights) equal autodiff of the dense reference', () => {
    const config = { hiddenSize: 16, intermediateSize: 8, numExperts: 5, topK: 2 };
    const moe = makeMoe(config, 21);
    const x = randn([2, 3, 16], 22);
    const proj = randn([2, 3, 16], 23);
    const [wr, w1, w2] = weightsOf(moe);
    const dense = (xx: tf.Tensor, r: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.reshape(sparseMoeReference(tf.reshape(xx, [6, 16]), r, a, b, 2).output, [2, 3, 16]), proj));
    const expected = tf.grads(dense)([x, wr, w1, w2]);
    for (const path of PATHS) {
      const sparse = (xx: tf.Tensor, r: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(sparseMoe(xx, r, a, b, 2, { path }).output, proj));
      const got = tf.grads(sparse)([x, wr, w1, w2]);
      ['x', 'router', 'input_linear', 'output_linear'].forEach((name, j) =>
        expectClose(got[j], expected[j], { atol: 1e-5, rtol: 1e-4 }, `${path}: d${name}`),
      );
    }
    moe.dispose();
  });

  it('gradients of the sparse path match finite differences', () => {
    const moe = makeMoe({ hiddenSize: 8, intermediateSize: 4, numExperts: 4, topK: 2 }, 31);
    const x = randn([3, 8], 32);
    const proj = randn([3, 8], 33);
    const [wr, w1, w2] = weightsOf(moe);
    const f = (xx: tf.Tensor, r: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(sparseMoe(xx, r, a, b, 2).output, proj));
    const grads = tf.grads(f)([x, wr, w1, w2]);
    const args = [x, wr, w1, w2];
    args.forEach((arg, j) => {
      const g = grads[j].dataSync();
      for (const at of [0, 5, arg.size - 1]) {
        const fd = finiteDiff(
          (v) => f(...(args.map((a, jj) => (jj === j ? v : a)) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])),
          arg,
          at,
          1e-2,
        );
        expect(Math.abs(fd - g[at])).toBeLessThan(3e-3 + 1e-2 * Math.abs(g[at]));
      }
    });
    moe.dispose();
  });

  it('namedParameters are the checkpoint keys (model guide: Checkpoint format)', () => {
    const moe = new SparseMoE({ hiddenSize: 16, intermediateSize: 8, numExperts: 4, topK: 2 });
    const params = [...moe.namedParameters('model.layers.0.block_sparse_moe')].map(([n, p]) => [n, p.shape]);
    expect(params).toEqual([
      ['model.layers.0.block_sparse_moe.router.layer.weight', [4, 16]],
      ['model.layers.0.block_sparse_moe.input_linear.weight', [4, 16, 16]],
      ['model.layers.0.block_sparse_moe.output_linear.weight', [4, 16, 8]],
    ]);
  });

  it('does not leak tensors (forward on every path, gradient, errors)', async () => {
    const moe = makeMoe({ hiddenSize: 16, intermediateSize: 8, numExperts: 4, topK: 2 }, 41);
    const x = randn([3, 16], 42);
    const [wr, w1, w2] = weightsOf(moe);
    await expectNoTensorLeak(() => {
      for (const path of PATHS) moe.forward(x, { path }).dispose();
      moe.forwardDense(x).dispose();
      const r = moe.forwardWithRouterLogits(x);
      tf.dispose([r.output, r.routerLogits]);
      tf.grads((xx: tf.Tensor, a: tf.Tensor) => tf.sum(sparseMoe(xx, wr, a, w2, 2, { path: 'gemv' }).output))([x, w1]).forEach((g) =>
        g.dispose(),
      );
      tf.grads((xx: tf.Tensor, a: tf.Tensor) => tf.sum(sparseMoe(xx, wr, a, w2, 2).output))([x, w1]).forEach((g) => g.dispose());
      tf.tidy(() => expect(() => moe.forward(tf.zeros([2, 5]))).toThrow(/SparseMoE: x/));
    }, backend);
    moe.dispose();
  });

  it('shape errors name the argument and both shapes', () => {
    const moe = new SparseMoE({ hiddenSize: 16, intermediateSize: 8, numExperts: 4, topK: 2 });
    expect(() => moe.forward(tf.zeros([2, 5]))).toThrow(ShapeError);
    expect(() => moe.forward(tf.zeros([2, 5]))).toThrow(
      /SparseMoE: x must be \[\.\.\., 16\] to match router\.layer\.weight \[4,16\], got \[2,5\]/,
    );
    const x = tf.zeros([3, 16]);
    const idx = tf.zeros([3, 2], 'int32');
    const w = tf.zeros([3, 2]);
    expect(() => moeExperts(x, tf.zeros([4, 16, 12]), tf.zeros([4, 16, 8]), idx, w)).toThrow(
      /moeExperts: inputLinear \[4,16,12\] does not match x \[3,16\]: expected inputLinear \[E, 2I, H\] with size 16 on axis 2, got 12/,
    );
    expect(() => moeExperts(x, tf.zeros([4, 16, 16]), tf.zeros([3, 16, 8]), idx, w)).toThrow(
      /outputLinear \[3,16,8\] does not match inputLinear \[4,16,16\]/,
    );
    expect(() => moeExperts(x, tf.zeros([4, 16, 16]), tf.zeros([4, 16, 8]), tf.zeros([2, 2], 'int32'), w)).toThrow(
      /indices \[2,2\] does not match x \[3,16\]/,
    );
    expect(() => new SparseMoE({ hiddenSize: 16, intermediateSize: 8, numExperts: 4, topK: 5 })).toThrow(
      /topK \(5\) must not exceed config.numExperts \(4\)/,
    );
  });

  (backend === 'wasm' ? it : it.skip)(
    'wasm: the gemv path runs the SIMD expert routine, and the JS loops with SIMD off, to the same result',
    () => {
      // 37 columns: two 16-wide SIMD steps and a 5-column tail in every row.
      const config = { hiddenSize: 37, intermediateSize: 19, numExperts: 5, topK: 2 };
      const moe = makeMoe(config, 21);
      const x = randn([6, 37], 22);
      const dense = moe.forwardDense(x);
      const count = () => simdCounters()[EXPERT_GEMV_SIMD_CALL] ?? 0;
      const before = count();
      const simd = moe.forward(x, { path: 'gemv' });
      expect(count()).toBeGreaterThan(before);
      expectClose(simd, dense, TOL, 'SIMD');
      const previous = setSimdEnabled(false);
      try {
        const off = count();
        const js = moe.forward(x, { path: 'gemv' });
        expect(count()).toBe(off);
        expectClose(js, dense, TOL, 'JS');
        tf.dispose(js);
      } finally {
        setSimdEnabled(previous);
      }
      tf.dispose([x, dense, simd]);
      moe.dispose();
    },
  );
});
