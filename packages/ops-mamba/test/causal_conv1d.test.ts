import { describeBackends, expectClose, expectNoTensorLeak, watchFastPath } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { causalConv1d, causalConv1dKernel } from '../src';
import { naiveConv } from './naive';
import { f64, randn } from './random';

const TOL = { atol: 1e-5, rtol: 1e-5 };

describeBackends('causalConv1d', (backend) => {
  it('runs fused on cpu and wasm', () => {
    expect(causalConv1dKernel.hasFused()).toBe(backend === 'cpu' || backend === 'wasm' || backend === 'native');
  });

  it('runs its fast path (on native, @graniteflow/native causalConv1d)', () => {
    const x = tf.tensor3d([[[1], [2], [3]]]);
    const w = tf.tensor2d([[1, 10, 100]]);
    const bias = tf.tensor1d([0.5]);
    const state = tf.tensor3d([[[7], [8]]]);
    const watch = watchFastPath(backend, causalConv1dKernel, 'causalConv1d');
    try {
      const out = causalConv1d(x, w, { bias, convState: state, activation: 'none' });
      expect(watch.calls()).toBe(1);
      // u = [7, 8, 1, 2, 3]: y_t = u_t + 10·u_{t+1} + 100·u_{t+2} + 0.5.
      expectClose(out.y, [7 + 80 + 100 + 0.5, 8 + 10 + 200 + 0.5, 1 + 20 + 300 + 0.5]);
      expectClose(out.convState, [2, 3]);
      tf.dispose([x, w, bias, state, out.y, out.convState]);
    } finally {
      watch.restore();
    }
  });

  it('a hand-computed case: taps, bias, state and the returned state', () => {
    // One channel, K = 3: y_t = 1·u_{t−2} + 10·u_{t−1} + 100·u_t + 0.5.
    const x = tf.tensor3d([[[1], [2], [3]]]); // [1, 3, 1]
    const w = tf.tensor2d([[1, 10, 100]]); // [1, 3]
    const bias = tf.tensor1d([0.5]);
    const fresh = causalConv1d(x, w, { bias, activation: 'none' });
    expectClose(fresh.y, [100.5, 210.5, 321.5]);
    expectClose(fresh.convState, [2, 3]);
    const cont = causalConv1d(tf.tensor3d([[[4]]]), w, { bias, convState: fresh.convState, activation: 'none' });
    expectClose(cont.y, [2 + 30 + 400 + 0.5]);
    expectClose(cont.convState, [3, 4]);
    const act = causalConv1d(tf.tensor3d([[[1]]]), tf.tensor2d([[0, 0, 1]]));
    expectClose(act.y, [1 / (1 + Math.exp(-1))]); // silu(1)
  });

  const cases = [
    { name: 'fresh sequence', batch: 2, T: 7, C: 5, K: 4, state: false, bias: true },
    { name: 'T = 1 decode from a state', batch: 2, T: 1, C: 5, K: 4, state: true, bias: true },
    { name: 'T > 1 from a state, no bias', batch: 1, T: 6, C: 3, K: 4, state: true, bias: false },
    { name: 'T < K − 1 from a state', batch: 2, T: 2, C: 3, K: 4, state: true, bias: true },
    { name: 'T < K − 1 fresh', batch: 1, T: 1, C: 3, K: 4, state: false, bias: true },
    { name: 'K = 1 (no state)', batch: 1, T: 3, C: 2, K: 1, state: false, bias: true },
  ];
  for (const c of cases) {
    for (const activation of ['silu', 'none'] as const) {
      it(`fused = reference = direct conv: ${c.name}, ${activation}`, () => {
        const x = randn([c.batch, c.T, c.C]);
        const w = randn([c.C, c.K]);
        const bias = c.bias ? randn([c.C]) : undefined;
        const convState = c.state ? randn([c.batch, c.K - 1, c.C]) : undefined;
        const out = causalConv1d(x, w, { bias, convState, activation });
        const [ry, rs] = causalConv1dKernel.reference({ x, weight: w, bias, convState }, { activation });
        const n = naiveConv(
          f64(x),
          f64(w),
          { batch: c.batch, T: c.T, C: c.C, K: c.K },
          bias && f64(bias),
          convState && f64(convState),
          activation === 'silu',
        );
        expect(out.convState.shape).toEqual([c.batch, c.K - 1, c.C]);
        expectClose(out.y, n.y, TOL, 'fused y');
        expectClose(out.convState, n.state, TOL, 'fused state');
        expectClose(ry, n.y, TOL, 'reference y');
        expectClose(rs, n.state, TOL, 'reference state');
        tf.dispose([x, w, bias, convState, out.y, out.convState, ry, rs].filter((t): t is tf.Tensor => t !== undefined));
      });
    }
  }

  it('one call over T = several calls continuing from the returned state (T = 1, 2, 3 chunks)', () => {
    const [batch, T, C, K] = [2, 9, 4, 4];
    const x = randn([batch, T, C]);
    const w = randn([C, K]);
    const bias = randn([C]);
    const full = causalConv1d(x, w, { bias });
    const ys: tf.Tensor[] = [];
    let state: tf.Tensor | undefined;
    let t = 0;
    for (const len of [1, 2, 3, 1, 2]) {
      const r = causalConv1d(tf.slice(x, [0, t, 0], [-1, len, -1]), w, { bias, convState: state });
      ys.push(r.y);
      state = r.convState;
      t += len;
    }
    expectClose(tf.concat(ys, 1), full.y, TOL);
    expectClose(state!, full.convState, TOL);
  });

  it('does not leak tensors', async () => {
    const x = randn([1, 5, 3]);
    const w = randn([3, 4]);
    const s = randn([1, 3, 3]);
    await expectNoTensorLeak(() => {
      const r = causalConv1d(x, w, { convState: s });
      tf.dispose([r.y, r.convState]);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(causalConv1d(a, w, { convState: b }).y))([x, s]);
      tf.dispose(g);
    });
    tf.dispose([x, w, s]);
  });
});
