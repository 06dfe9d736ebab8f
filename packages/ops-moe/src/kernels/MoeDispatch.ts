import { defineKernel } from '@graniteflow/core';
import { MoeDispatch, type MoeDispatchAttrs, type MoeDispatchInputs } from '../kernel_names';
import { moeDispatchReference } from '../ops/moe_dispatch_reference';
import { moeDispatchImpl } from './MoeDispatch_impl';

/**
 * Dispatch: `[order [M], tokens [M], offsets [E+1]]` (int32), M = N·k. Integer in, integer out:
 * its gradient is zero (declared so backprop can pass it when the indices come from the router;
 * core gives the int32 input its float32 zeros).
 */
export const moeDispatchKernel = defineKernel<MoeDispatchInputs, MoeDispatchAttrs>({
  name: MoeDispatch,
  inputNames: ['indices'],
  reference: ({ indices }, { numExperts }) => moeDispatchReference(indices, numExperts),
  fused: {
    outputs: ({ indices }, { numExperts }) => {
      const m = indices.shape.reduce((a, b) => a * b, 1);
      return [
        { shape: [m], dtype: 'int32' },
        { shape: [m], dtype: 'int32' },
        { shape: [numExperts + 1], dtype: 'int32' },
      ];
    },
    compute: ({ indices }, [order, tokens, offsets], shapes, { numExperts }) => {
      const k = shapes.indices[1] ?? 1;
      moeDispatchImpl(indices as Int32Array, k, numExperts, order as Int32Array, tokens as Int32Array, offsets as Int32Array);
    },
  },
  gradient: () => ({}),
  nonDifferentiable: ['indices'],
});
