import { defineKernel, nativeKernel, recordingGradients } from '@graniteflow/core';
import { SelectiveStateUpdate, type SelectiveStateUpdateAttrs, type SelectiveStateUpdateInputs } from '../kernel_names';
import { selectiveStateUpdateGrad } from '../gradients/SelectiveScan_grad';
import { selectiveStateUpdateReference } from '../ops/selective_state_update_reference';
import { f32, pointersOf, f32Inputs, mapValues, SSM_INPUTS } from './flat';
import { scanSimdKernels, selectiveScanSimd, simdScanSupports } from './wasm/scan_simd';
import { selectiveStateUpdateImpl } from './SelectiveStateUpdate_impl';

/** SelectiveStateUpdate: one decode step of the recurrence; fused on cpu and wasm, native SIMD on native. */
export const selectiveStateUpdateKernel = defineKernel<SelectiveStateUpdateInputs, SelectiveStateUpdateAttrs>({
  name: SelectiveStateUpdate,
  inputNames: ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias', 'state'],
  reference: selectiveStateUpdateReference,
  fused: {
    outputs: ({ x, state }) => [
      { shape: x.shape, dtype: 'float32' }, // y [B, Hm, P]
      { shape: state.shape, dtype: 'float32' }, // new state [B, Hm, P, N]
    ],
    compute: (a, [y, newState], shapes, attrs) => {
      const [batch, Hm, P] = shapes.x;
      const [, G, N] = shapes.B;
      const arrays = { ...f32Inputs(a, SSM_INPUTS), state: f32(a.state, 'state') };
      const outs = { y: f32(y, 'y'), newState: f32(newState, 'newState') };
      const dims = { batch, heads: Hm, headDim: P, groups: G, stateSize: N };
      // A step is a scan of one token ([B, 1, Hm, P] = [B, Hm, P]): same SIMD path on wasm.
      const simd = scanSimdKernels([...Object.values(arrays), outs.y, outs.newState]);
      if (simd !== null && simdScanSupports({ ...dims, seqLen: 1 })) {
        const { state, ...rest } = pointersOf(arrays);
        const o = pointersOf(outs);
        selectiveScanSimd(
          simd,
          { ...rest, initialState: state, y: o.y, finalState: o.newState },
          { ...dims, seqLen: 1 },
          attrs.dtMin,
          attrs.dtMax,
        );
      } else {
        selectiveStateUpdateImpl(arrays, dims, attrs.dtMin, attrs.dtMax, outs);
      }
    },
  },
  backendKernels: {
    // A step is the native scan of one token ([B, 1, Hm, P] = [B, Hm, P]) from `state`. Updating
    // a given-up state in place matters: a new 2 MiB state per H-Micro layer and token is 72 MiB
    // of garbage per token, and the collections it sets off took a quarter of decode time.
    native: nativeKernel<SelectiveStateUpdateAttrs>((addon, a, { dtMin, dtMax, reuseState }) => {
      const [batch, Hm, P] = a.x.shape;
      const [, G, N] = a.B.shape;
      const inputs = { ...f32Inputs(mapValues(a, SSM_INPUTS), SSM_INPUTS), initialState: f32(a.state.values, 'state') };
      const inPlace = reuseState === true && a.state.unshared && !recordingGradients();
      const y = new Float32Array(inputs.x.length);
      const newState = inPlace ? inputs.initialState : new Float32Array(inputs.initialState.length);
      addon.ssmScan(inputs, { batch, seqLen: 1, heads: Hm, headDim: P, groups: G, stateSize: N }, dtMin, dtMax, {
        y,
        finalState: newState,
      });
      return [
        { shape: a.x.shape, values: y },
        inPlace ? { shape: a.state.shape, inPlaceOf: 'state' } : { shape: a.state.shape, values: newState },
      ];
    }),
  },
  gradient: selectiveStateUpdateGrad,
});
