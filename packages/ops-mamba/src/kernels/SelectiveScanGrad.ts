import { defineKernel, nativeKernel, vjp } from '@graniteflow/core';
import * as tf from '@tensorflow/tfjs-core';
import { SelectiveScanGrad, type SelectiveScanGradAttrs, type SelectiveScanGradInputs } from '../kernel_names';
import { selectiveScanReference } from '../ops/selective_scan_reference';
import { f32, f32Opt, f32Inputs, mapValues, SSM_INPUTS } from './flat';
import { selectiveScanGradImpl } from './SelectiveScanGrad_impl';

const GRAD_OUTPUTS = ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias', 'initialState'] as const;

/**
 * SelectiveScanGrad: the backward pass of SelectiveScan. Outputs the gradients of x, dt, A_log, B,
 * C, D, dt_bias and initialState, in that order (the last is filled even without an initial state).
 * Fused (a reverse sweep with checkpointed states) on cpu and wasm, `@graniteflow/native`'s
 * threaded C sweep on native; the reference is tfjs autodiff of the chunked-SSD reference. Second
 * derivatives are not supported (no gradient).
 */
export const selectiveScanGradKernel = defineKernel<SelectiveScanGradInputs, SelectiveScanGradAttrs>({
  name: SelectiveScanGrad,
  inputNames: ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias', 'initialState', 'dy', 'dFinalState'],
  reference: ({ dy, dFinalState, ...inputs }, attrs) => {
    const [batch, , Hm, P] = inputs.x.shape;
    const N = (inputs.B.shape as number[])[3];
    const init = inputs.initialState ?? tf.zeros([batch, Hm, P, N]);
    const { x, dt, A_log, B, C, D, dt_bias } = inputs;
    // core's vjp: this reference also runs from inside SelectiveScan's gradient function.
    const grads = vjp(
      (x, dt, A_log, B, C, D, dt_bias, initialState) => selectiveScanReference({ x, dt, A_log, B, C, D, dt_bias, initialState }, attrs),
      [x, dt, A_log, B, C, D, dt_bias, init],
      [dy, dFinalState],
    );
    if (!inputs.initialState) init.dispose();
    return grads;
  },
  fused: {
    outputs: (s) =>
      GRAD_OUTPUTS.map((k) => ({
        shape: k === 'initialState' ? [s.x.shape[0], s.x.shape[2], s.x.shape[3], s.B.shape[3]] : s[k].shape,
        dtype: 'float32' as const,
      })),
    compute: (a, outs, shapes, attrs) => {
      const [batch, T, Hm, P] = shapes.x;
      const [, , G, N] = shapes.B;
      const [x, dt, A_log, B, C, D, dt_bias, initialState] = outs.map((o, i) => f32(o, `d${GRAD_OUTPUTS[i]}`));
      selectiveScanGradImpl(
        { ...f32Inputs(a, SSM_INPUTS), initialState: f32Opt(a.initialState, 'initialState') },
        { dy: f32(a.dy, 'dy'), dFinalState: f32(a.dFinalState, 'dFinalState') },
        { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N },
        attrs.dtMin,
        attrs.dtMax,
        { x, dt, A_log, B, C, D, dt_bias, initialState },
      );
    },
  },
  backendKernels: {
    native: nativeKernel<SelectiveScanGradAttrs>((addon, a, { dtMin, dtMax }) => {
      const [batch, T, Hm, P] = a.x.shape;
      const [, , G, N] = a.B.shape;
      const inputs = { ...f32Inputs(mapValues(a, SSM_INPUTS), SSM_INPUTS), initialState: f32Opt(a.initialState?.values, 'initialState') };
      const shapeOf = (k: (typeof GRAD_OUTPUTS)[number]) => (k === 'initialState' ? [batch, Hm, P, N] : a[k].shape);
      const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);
      const grads = Object.fromEntries(GRAD_OUTPUTS.map((k) => [k, new Float32Array(size(shapeOf(k)))])) as Record<
        (typeof GRAD_OUTPUTS)[number],
        Float32Array
      >;
      addon.ssmScanGrad(
        inputs,
        { dy: f32(a.dy.values, 'dy'), dFinalState: f32(a.dFinalState.values, 'dFinalState') },
        { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N },
        dtMin,
        dtMax,
        grads,
      );
      return GRAD_OUTPUTS.map((k) => ({ shape: shapeOf(k), values: grads[k] }));
    }),
  },
});
