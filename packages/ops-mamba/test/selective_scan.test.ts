import { describeBackends, expectClose, expectNoTensorLeak, watchFastPath } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { selectiveScan, selectiveScanKernel, selectiveStateUpdate, type SelectiveScanArgs } from '../src';
import { naiveScan, type Dims } from './naive';
import { f64, randn, randu } from './random';

interface Case extends Dims {
  name: string;
  Q: number;
  init?: boolean;
  limit?: [number, number];
}

const CASES: Case[] = [
  { name: 'T = 1', batch: 1, T: 1, Hm: 2, P: 3, G: 1, N: 4, Q: 4 },
  { name: 'T below the chunk', batch: 1, T: 5, Hm: 2, P: 3, G: 1, N: 4, Q: 8 },
  { name: 'T equal to the chunk', batch: 1, T: 8, Hm: 2, P: 3, G: 1, N: 4, Q: 8 },
  { name: 'T not a multiple, several chunks', batch: 1, T: 13, Hm: 2, P: 3, G: 1, N: 5, Q: 4 },
  { name: 'B > 1, G > 1, initial state', batch: 2, T: 11, Hm: 6, P: 3, G: 3, N: 4, Q: 4, init: true },
  { name: 'G = Hm, clamped dt', batch: 2, T: 7, Hm: 4, P: 2, G: 4, N: 3, Q: 3, init: true, limit: [0.05, 0.8] },
];

function makeArgs(c: Dims & { init?: boolean }): SelectiveScanArgs {
  const { batch, T, Hm, P, G, N } = c;
  return {
    x: randn([batch, T, Hm, P]),
    // Spread wide enough to reach both softplus branches (v > 20 takes the identity, P23).
    dt: randn([batch, T, Hm], 2),
    A_log: randu([Hm], -1, 1),
    B: randn([batch, T, G, N]),
    C: randn([batch, T, G, N]),
    D: randn([Hm]),
    dt_bias: randn([Hm], 0.5),
    initialState: c.init ? randn([batch, Hm, P, N]) : undefined,
  };
}

function naiveOf(args: SelectiveScanArgs, c: Case) {
  return naiveScan(
    {
      x: f64(args.x),
      dt: f64(args.dt),
      A_log: f64(args.A_log),
      B: f64(args.B),
      C: f64(args.C),
      D: f64(args.D),
      dt_bias: f64(args.dt_bias),
      initialState: args.initialState ? f64(args.initialState) : undefined,
    },
    c,
    c.limit,
  );
}

const TOL = { atol: 2e-4, rtol: 2e-4 };

describeBackends('selectiveScan', (backend) => {
  it('runs fused on cpu and wasm', () => {
    expect(selectiveScanKernel.hasFused()).toBe(backend === 'cpu' || backend === 'wasm' || backend === 'native');
  });

  it('runs its fast path (on native, @graniteflow/native ssmScan), equal to the recurrence', () => {
    const c: Case = { name: '', batch: 2, T: 6, Hm: 4, P: 8, G: 2, N: 37, Q: 4, init: true };
    const args = makeArgs(c);
    const watch = watchFastPath(backend, selectiveScanKernel, 'ssmScan');
    try {
      const { y, finalState } = selectiveScan(args, { chunkSize: c.Q });
      expect(watch.calls()).toBe(1);
      const naive = naiveOf(args, c);
      expectClose(y, naive.y, TOL, 'y');
      expectClose(finalState, naive.finalState, TOL, 'finalState');
      tf.dispose([y, finalState, ...Object.values(args)]);
    } finally {
      watch.restore();
    }
  });

  for (const c of CASES) {
    it(`fused = chunked reference = per-token recurrence: ${c.name}`, () => {
      const args = makeArgs(c);
      const attrs = { dtMin: c.limit?.[0] ?? 0, dtMax: c.limit?.[1] ?? Infinity, chunkSize: c.Q };
      const { y, finalState } = selectiveScan(args, { chunkSize: c.Q, timeStepLimit: c.limit });
      const [ry, rs] = selectiveScanKernel.reference(args, attrs);
      const naive = naiveOf(args, c);
      expect(y.shape).toEqual([c.batch, c.T, c.Hm, c.P]);
      expect(finalState.shape).toEqual([c.batch, c.Hm, c.P, c.N]);
      expect(y.dtype).toBe('float32');
      expectClose(y, naive.y, TOL, 'fused y vs naive');
      expectClose(finalState, naive.finalState, TOL, 'fused state vs naive');
      expectClose(ry, naive.y, TOL, 'reference y vs naive');
      expectClose(rs, naive.finalState, TOL, 'reference state vs naive');
      tf.dispose([y, finalState, ry, rs, ...Object.values(args)]);
    });
  }

  it('the chunk size never changes the reference', () => {
    const c = CASES[4];
    const args = makeArgs(c);
    const [y1, s1] = selectiveScanKernel.reference(args, { dtMin: 0, dtMax: Infinity, chunkSize: 1 });
    const [y2, s2] = selectiveScanKernel.reference(args, { dtMin: 0, dtMax: Infinity, chunkSize: 64 });
    expectClose(y1, y2, TOL);
    expectClose(s1, s2, TOL);
    tf.dispose([y1, s1, y2, s2, ...Object.values(args)]);
  });

  it('prefill(T) = prefill(T − n) then n scans of one token, and then n recurrent steps', () => {
    const c: Case = { name: '', batch: 2, T: 9, Hm: 4, P: 3, G: 2, N: 4, Q: 4, init: true };
    const args = makeArgs(c);
    const full = selectiveScan(args, { chunkSize: c.Q });
    const n = 3;
    const head = (t: tf.Tensor, from: number, len: number) => tf.slice(t, [0, from], [-1, len]);
    const part = (from: number, len: number, state?: tf.Tensor): SelectiveScanArgs => ({
      ...args,
      x: head(args.x, from, len),
      dt: head(args.dt, from, len),
      B: head(args.B, from, len),
      C: head(args.C, from, len),
      initialState: state,
    });
    const first = selectiveScan(part(0, c.T - n, args.initialState), { chunkSize: c.Q });
    let state = first.finalState;
    const ys = [first.y];
    let stepState = state;
    const stepYs: tf.Tensor[] = [];
    for (let t = c.T - n; t < c.T; t++) {
      const r = selectiveScan(part(t, 1, state), { chunkSize: c.Q });
      ys.push(r.y);
      state = r.finalState;
      const p = part(t, 1);
      const s = selectiveStateUpdate({
        ...args,
        x: tf.squeeze(p.x, [1]),
        dt: tf.squeeze(p.dt, [1]),
        B: tf.squeeze(p.B, [1]),
        C: tf.squeeze(p.C, [1]),
        state: stepState,
      });
      stepYs.push(tf.expandDims(s.y, 1));
      stepState = s.state;
    }
    expectClose(tf.concat(ys, 1), full.y, TOL, 'chunked prefill y');
    expectClose(state, full.finalState, TOL, 'chunked prefill state');
    expectClose(tf.concat([first.y, ...stepYs], 1), full.y, TOL, 'prefill + steps y');
    expectClose(stepState, full.finalState, TOL, 'prefill + steps state');
  });

  it('does not leak tensors (forward and gradient)', async () => {
    const c = CASES[4];
    const args = makeArgs(c);
    await expectNoTensorLeak(() => {
      const { y, finalState } = selectiveScan(args, { chunkSize: c.Q });
      tf.dispose([y, finalState]);
      const g = tf.grads((x: tf.Tensor, s: tf.Tensor) => {
        const r = selectiveScan({ ...args, x, initialState: s }, { chunkSize: c.Q });
        return tf.add(tf.sum(r.y), tf.sum(r.finalState));
      })([args.x, args.initialState!]);
      tf.dispose(g);
      const [ry, rs] = selectiveScanKernel.reference(args, { dtMin: 0, dtMax: Infinity, chunkSize: 4 });
      tf.dispose([ry, rs]);
    });
    tf.dispose(Object.values(args));
  });
});
