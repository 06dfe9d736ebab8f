import { describeBackends, expectClose, watchFastPath } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import {
  causalConv1dKernel,
  gatedRmsNormKernel,
  selectiveScanGradKernel,
  selectiveScanKernel,
  selectiveStateUpdateKernel,
  type Kernel,
} from './kernels';
import { dot, finiteDifferences, naiveConv, naiveGatedNorm, naiveScan } from './naive';
import { f64, randn, randu } from './random';

/**
 * Gradients of each fused kernel (tf.grads through the registered gradient) against tfjs autodiff
 * of the composed reference and against central finite differences of the float64 oracle. The loss
 * is Σ_k ⟨output_k, W_k⟩ with random W_k, so every output's gradient path is exercised.
 */
const TOL = { atol: 2e-3, rtol: 2e-3 };

type AnyKernel = Kernel<Record<string, tf.Tensor | undefined>, never>;

function checkGradients(
  kernel: AnyKernel,
  inputs: Record<string, tf.Tensor>,
  attrs: object,
  oracle: (a: Record<string, Float64Array>) => Float64Array[],
): void {
  const names = Object.keys(inputs);
  const outs = kernel.run(inputs, attrs as never);
  const weights = outs.map((o) => randn(o.shape));
  const lossOf =
    (fn: (i: Record<string, tf.Tensor>) => tf.Tensor[]) =>
    (...xs: tf.Tensor[]) => {
      const replaced: Record<string, tf.Tensor> = {};
      names.forEach((n, i) => (replaced[n] = xs[i]));
      const o = fn(replaced);
      return tf.addN(o.map((t, k) => tf.sum(tf.mul(t, weights[k]))));
    };
  const values = names.map((n) => inputs[n]);
  const fused = tf.grads(lossOf((i) => kernel.run(i, attrs as never)))(values);
  const reference = tf.grads(lossOf((i) => kernel.reference(i, attrs as never)))(values);
  const w64 = weights.map(f64);
  const arrays = names.map((n) => f64(inputs[n]));
  const fd = finiteDifferences((arr) => {
    const named: Record<string, Float64Array> = {};
    names.forEach((n, i) => (named[n] = arr[i]));
    return oracle(named).reduce((s, o, k) => s + dot(o, w64[k]), 0);
  }, arrays);
  names.forEach((n, i) => {
    expect(fused[i].shape).toEqual(inputs[n].shape);
    expectClose(fused[i], reference[i], TOL, `d${n}: fused vs reference autodiff`);
    expectClose(fused[i], fd[i], TOL, `d${n}: fused vs finite differences`);
  });
  tf.dispose([...outs, ...weights, ...fused, ...reference]);
}

describeBackends('gradients', (backend) => {
  it('SelectiveScan: every float input, including initialState (G = 2, T not a multiple of the chunk)', () => {
    const [batch, T, Hm, P, G, N] = [2, 5, 4, 2, 2, 3];
    const inputs = {
      x: randn([batch, T, Hm, P]),
      dt: randn([batch, T, Hm]),
      A_log: randu([Hm], -1, 1),
      B: randn([batch, T, G, N]),
      C: randn([batch, T, G, N]),
      D: randn([Hm]),
      dt_bias: randn([Hm], 0.5),
      initialState: randn([batch, Hm, P, N]),
    };
    checkGradients(selectiveScanKernel as unknown as AnyKernel, inputs, { dtMin: 0, dtMax: Infinity, chunkSize: 2 }, (a) => {
      const r = naiveScan(a as never, { batch, T, Hm, P, G, N });
      return [r.y, r.finalState];
    });
    tf.dispose(Object.values(inputs));
  });

  it('SelectiveStateUpdate: every float input', () => {
    const [batch, Hm, P, G, N] = [2, 4, 2, 2, 3];
    const inputs = {
      x: randn([batch, Hm, P]),
      dt: randn([batch, Hm]),
      A_log: randu([Hm], -1, 1),
      B: randn([batch, G, N]),
      C: randn([batch, G, N]),
      D: randn([Hm]),
      dt_bias: randn([Hm], 0.5),
      state: randn([batch, Hm, P, N]),
    };
    checkGradients(selectiveStateUpdateKernel as unknown as AnyKernel, inputs, { dtMin: 0, dtMax: Infinity }, (a) => {
      const r = naiveScan({ ...a, initialState: a.state } as never, { batch, T: 1, Hm, P, G, N });
      return [r.y, r.finalState];
    });
    tf.dispose(Object.values(inputs));
  });

  it('CausalConv1d: x, weight, bias and convState', () => {
    const [batch, T, C, K] = [2, 3, 3, 4];
    const inputs = { x: randn([batch, T, C]), weight: randn([C, K]), bias: randn([C]), convState: randn([batch, K - 1, C]) };
    checkGradients(causalConv1dKernel as unknown as AnyKernel, inputs, { activation: 'silu' }, (a) => {
      const r = naiveConv(a.x, a.weight, { batch, T, C, K }, a.bias, a.convState, true);
      return [r.y, r.state];
    });
    tf.dispose(Object.values(inputs));
  });

  it('GatedRmsNorm: y, z and weight (grouped)', () => {
    const [rows, D, gs] = [3, 6, 3];
    const inputs = { y: randn([rows, D]), z: randn([rows, D]), weight: randn([D]) };
    checkGradients(gatedRmsNormKernel as unknown as AnyKernel, inputs, { eps: 1e-5, groupSize: gs }, (a) => [
      naiveGatedNorm(a.y, a.z, a.weight, D, gs, 1e-5),
    ]);
    tf.dispose(Object.values(inputs));
  });

  it('SelectiveScanGrad: the hand-written backward = autodiff of the reference across checkpoints (T = 150)', () => {
    const [batch, T, Hm, P, G, N] = [2, 150, 4, 2, 2, 4];
    for (const withInit of [true, false]) {
      const inputs = {
        x: randn([batch, T, Hm, P]),
        dt: randn([batch, T, Hm]),
        A_log: randu([Hm], -2, 0),
        B: randn([batch, T, G, N]),
        C: randn([batch, T, G, N]),
        D: randn([Hm]),
        dt_bias: randn([Hm], 0.5),
        initialState: withInit ? randn([batch, Hm, P, N]) : undefined,
        dy: randn([batch, T, Hm, P]),
        dFinalState: randn([batch, Hm, P, N]),
      };
      const attrs = { dtMin: 0.001, dtMax: 2, chunkSize: 32 };
      const before = tf.memory().numTensors;
      const watch = watchFastPath(backend, selectiveScanGradKernel, 'ssmScanGrad');
      let fused: tf.Tensor[];
      try {
        fused = selectiveScanGradKernel.run(inputs, attrs);
        expect(watch.calls()).toBe(1); // the fused body, or on native @graniteflow/native's ssmScanGrad
      } finally {
        watch.restore();
      }
      expect(tf.memory().numTensors).toBe(before + fused.length); // only its eight outputs stay
      const reference = selectiveScanGradKernel.reference(inputs, attrs);
      fused.forEach((g, i) => expectClose(g, reference[i], { atol: 2e-3, rtol: 2e-3 }, `output ${i}, initial state ${withInit}`));
      tf.dispose([...fused, ...reference, ...Object.values(inputs).filter((t): t is tf.Tensor => t !== undefined)]);
    }
  });
});
