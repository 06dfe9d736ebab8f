import { defineKernel, nativeKernel } from '@graniteflow/core';
import { SelectiveScan, type SelectiveScanAttrs, type SelectiveScanInputs } from '../kernel_names';
import { selectiveScanGrad } from '../gradients/SelectiveScan_grad';
import { selectiveScanReference } from '../ops/selective_scan_reference';
import { f32, f32Opt, pointersOf, f32Inputs, mapValues, SSM_INPUTS } from './flat';
import { scanSimdKernels, selectiveScanSimd, simdScanSupports } from './wasm/scan_simd';
import { selectiveScanImpl } from './SelectiveScan_impl';

/**
 * SelectiveScan: chunked-SSD reference; a sequential fused body on cpu (JS) and wasm (WebAssembly
 * SIMD over the heap, JS when N is not a multiple of 4); on native, `@graniteflow/native`'s
 * multi-threaded SIMD scan.
 */
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
      const dims = { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N };
      const arrays = { ...f32Inputs(a, SSM_INPUTS), initialState: f32Opt(a.initialState, 'initialState') };
      const outs = { y: f32(y, 'y'), finalState: f32(finalState, 'finalState') };
      // On wasm, the register-tiled SIMD scan over the heap (measured ~10x the JS loop, bench/run.ts).
      const simd = scanSimdKernels([...Object.values(arrays), outs.y, outs.finalState]);
      if (simd !== null && simdScanSupports(dims)) {
        selectiveScanSimd(simd, { ...pointersOf(arrays), ...pointersOf(outs) }, dims, attrs.dtMin, attrs.dtMax);
      } else {
        selectiveScanImpl(arrays, dims, attrs.dtMin, attrs.dtMax, outs);
      }
    },
  },
  backendKernels: {
    native: nativeKernel<SelectiveScanAttrs>((addon, a, { dtMin, dtMax }) => {
      const [batch, T, Hm, P] = a.x.shape;
      const [, , G, N] = a.B.shape;
      const inputs = { ...f32Inputs(mapValues(a, SSM_INPUTS), SSM_INPUTS), initialState: f32Opt(a.initialState?.values, 'initialState') };
      const y = new Float32Array(inputs.x.length);
      const finalState = new Float32Array(batch * Hm * P * N);
      addon.ssmScan(inputs, { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N }, dtMin, dtMax, { y, finalState });
      return [
        { shape: a.x.shape, values: y },
        { shape: [batch, Hm, P, N], values: finalState },
      ];
    }),
  },
  gradient: selectiveScanGrad,
});
