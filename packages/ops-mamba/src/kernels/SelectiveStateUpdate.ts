import { defineKernel } from '@graniteflow/core';
import {
  SelectiveStateUpdate,
  type SelectiveStateUpdateAttrs,
  type SelectiveStateUpdateInputs,
} from '../kernel_names';
import { selectiveStateUpdateReference } from '../ops/selective_state_update_reference';
import { f32 } from './flat';
import { selectiveStateUpdateImpl } from './SelectiveStateUpdate_impl';

/** SelectiveStateUpdate: one decode step of the recurrence; fused on cpu and wasm. */
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
      selectiveStateUpdateImpl(
        {
          x: f32(a.x, 'x'),
          dt: f32(a.dt, 'dt'),
          A_log: f32(a.A_log, 'A_log'),
          B: f32(a.B, 'B'),
          C: f32(a.C, 'C'),
          D: f32(a.D, 'D'),
          dt_bias: f32(a.dt_bias, 'dt_bias'),
          state: f32(a.state, 'state'),
        },
        { batch, heads: Hm, headDim: P, groups: G, stateSize: N },
        attrs.dtMin,
        attrs.dtMax,
        { y: f32(y, 'y'), newState: f32(newState, 'newState') },
      );
    },
  },
  gradient: 'reference',
});
