import { describeBackends, expectClose, expectNoTensorLeak, watchFastPath } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { selectiveStateUpdate, selectiveStateUpdateKernel, type SelectiveStateUpdateArgs } from '../src';
import { naiveScan } from './naive';
import { f64, randn, randu } from './random';

const TOL = { atol: 1e-4, rtol: 1e-4 };

function makeArgs(batch: number, Hm: number, P: number, G: number, N: number): SelectiveStateUpdateArgs {
  return {
    x: randn([batch, Hm, P]),
    dt: randn([batch, Hm], 2),
    A_log: randu([Hm], -1, 1),
    B: randn([batch, G, N]),
    C: randn([batch, G, N]),
    D: randn([Hm]),
    dt_bias: randn([Hm], 0.5),
    state: randn([batch, Hm, P, N]),
  };
}

describeBackends('selectiveStateUpdate', (backend) => {
  it('runs fused on cpu and wasm', () => {
    expect(selectiveStateUpdateKernel.hasFused()).toBe(backend === 'cpu' || backend === 'wasm' || backend === 'native');
  });

  it('runs its fast path (on native, @graniteflow/native ssmScan of one token)', () => {
    const args = makeArgs(2, 4, 3, 2, 20);
    const watch = watchFastPath(backend, selectiveStateUpdateKernel, 'ssmScan');
    try {
      const out = selectiveStateUpdate(args, {});
      expect(watch.calls()).toBe(1);
      const [ry, rs] = selectiveStateUpdateKernel.reference(args, { dtMin: 0, dtMax: Infinity });
      expectClose(out.y, ry, TOL, 'y');
      expectClose(out.state, rs, TOL, 'state');
      tf.dispose([out.y, out.state, ry, rs, ...Object.values(args)]);
    } finally {
      watch.restore();
    }
  });

  for (const [batch, Hm, P, G, N, limit] of [
    [1, 2, 3, 1, 4, undefined],
    [2, 6, 4, 2, 5, undefined],
    [3, 4, 2, 4, 3, [0.1, 0.5]],
  ] as [number, number, number, number, number, [number, number] | undefined][]) {
    it(`fused = reference = one step of the recurrence: B ${batch}, Hm ${Hm}, G ${G}${limit ? ', clamped dt' : ''}`, () => {
      const args = makeArgs(batch, Hm, P, G, N);
      const out = selectiveStateUpdate(args, { timeStepLimit: limit });
      const [ry, rs] = selectiveStateUpdateKernel.reference(args, { dtMin: limit?.[0] ?? 0, dtMax: limit?.[1] ?? Infinity });
      const n = naiveScan(
        {
          x: f64(args.x),
          dt: f64(args.dt),
          A_log: f64(args.A_log),
          B: f64(args.B),
          C: f64(args.C),
          D: f64(args.D),
          dt_bias: f64(args.dt_bias),
          initialState: f64(args.state),
        },
        { batch, T: 1, Hm, P, G, N },
        limit,
      );
      expect(out.y.shape).toEqual([batch, Hm, P]);
      expect(out.state.shape).toEqual([batch, Hm, P, N]);
      expectClose(out.y, n.y, TOL, 'fused y');
      expectClose(out.state, n.finalState, TOL, 'fused state');
      expectClose(ry, n.y, TOL, 'reference y');
      expectClose(rs, n.finalState, TOL, 'reference state');
      tf.dispose([out.y, out.state, ry, rs, ...Object.values(args)]);
    });
  }

  it('leaves the input state untouched and does not leak', async () => {
    const args = makeArgs(2, 4, 3, 2, 4);
    const before = f64(args.state);
    await expectNoTensorLeak(() => {
      const r = selectiveStateUpdate(args);
      tf.dispose([r.y, r.state]);
      tf.dispose(tf.grads((x: tf.Tensor, s: tf.Tensor) => tf.sum(selectiveStateUpdate({ ...args, x, state: s }).y))([args.x, args.state]));
    });
    expectClose(args.state, before, { atol: 0, rtol: 0 });
    tf.dispose(Object.values(args));
  });

  describe('reuseState (the caller gives the state up)', () => {
    const inPlace = backend === 'native';

    it(`${inPlace ? 'writes the new state into the given one' : 'allocates the new state as without it'}, with the same values`, () => {
      const args = makeArgs(2, 4, 3, 2, 5);
      const [ry, rs] = selectiveStateUpdateKernel.reference(args, { dtMin: 0, dtMax: Infinity });
      const out = selectiveStateUpdate(args, { reuseState: true });
      expect(out.state.dataId === args.state.dataId).toBe(inPlace); // tensors sharing memory share the data id
      expectClose(out.y, ry, TOL, 'y');
      expectClose(out.state, rs, TOL, 'state');
      args.state.dispose(); // what the caller does next: the new state keeps the memory
      expectClose(out.state, rs, TOL, 'state after the given one is disposed');
      tf.dispose([out.y, out.state, ry, rs, ...Object.values(args)]);
    });

    it('leaves a state that another tensor shares (a clone) untouched', () => {
      const args = makeArgs(1, 2, 3, 1, 4);
      const snapshot = tf.clone(args.state); // shares the memory on cpu-like backends
      const before = f64(args.state);
      const out = selectiveStateUpdate(args, { reuseState: true });
      expectClose(snapshot, before, { atol: 0, rtol: 0 });
      expect(out.state.dataId === snapshot.dataId).toBe(false);
      tf.dispose([out.y, out.state, snapshot, ...Object.values(args)]);
    });

    it('leaves the state untouched while gradients are recorded, and the gradient stays right', () => {
      const args = makeArgs(1, 2, 3, 1, 4);
      const before = f64(args.state);
      const loss = (reuse: boolean) => (s: tf.Tensor) => {
        const r = selectiveStateUpdate({ ...args, state: s }, { reuseState: reuse });
        return tf.add(tf.sum(r.y), tf.sum(tf.square(r.state)));
      };
      const g = tf.grad(loss(true))(args.state);
      expectClose(args.state, before, { atol: 0, rtol: 0 });
      const expected = tf.grad(loss(false))(args.state);
      expectClose(g, expected, { atol: 0, rtol: 0 });
      tf.dispose([g, expected, ...Object.values(args)]);
    });
  });
});
