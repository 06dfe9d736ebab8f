import { defineKernel } from '@graniteflow/core';
import { SelectiveScan, type SelectiveScanAttrs, type SelectiveScanInputs } from '../kernel_names';
import { selectiveScanReference } from '../ops/selective_scan_reference';
import { f32, f32Opt } from './flat';
import { selectiveScanImpl } from './SelectiveScan_impl';

/** SelectiveScan: chunked-SSD reference; sequential fused body on cpu and wasm. */
export const selectiveScanKernel = defineKernel<SelectiveScanInputs, SelectiveScanAttrs>({
  name: SelectiveScan,
  inputNames: ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias', 'initialState'],
  reference: selectiveScanReference,
  fused: {
    outputs: ({ x, B }) => {
      const [batch, , Hm, P] = x.shape;
      return [
        { shape: x.shape, dtype: 'float32' }, // y [B, T, Hm, P]
        { shape: [batch, Hm, P, B.shape[3]], dtype: 'float32' }, // finalState [B, Hm, P, N]
      ];
    },
    compute: (a, [y, finalState], shapes, attrs) => {
      const [batch, T, Hm, P] = shapes.x;
      const [, , G, N] = shapes.B;
      selectiveScanImpl(
        {
          x: f32(a.x, 'x'),
          dt: f32(a.dt, 'dt'),
          A_log: f32(a.A_log, 'A_log'),
          B: f32(a.B, 'B'),
          C: f32(a.C, 'C'),
          D: f32(a.D, 'D'),
          dt_bias: f32(a.dt_bias, 'dt_bias'),
          initialState: f32Opt(a.initialState, 'initialState'),
        },
        { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N },
        attrs.dtMin,
        attrs.dtMax,
        { y: f32(y, 'y'), finalState: f32(finalState, 'finalState') },
      );
    },
  },
  gradient: 'reference',
});
