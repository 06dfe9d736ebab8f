import { defineKernel } from '@graniteflow/core';
import { MoeCombine, type MoeCombineAttrs, type MoeCombineInputs } from '../kernel_names';
import { moeCombineReference } from '../ops/moe_combine_reference';
import { moeCombineImpl } from './MoeCombine_impl';

/** Combine: `out [N, H]`. Gradient: autodiff of the reference (a gather and a segment sum). */
export const moeCombineKernel = defineKernel<MoeCombineInputs, MoeCombineAttrs>({
  name: MoeCombine,
  inputNames: ['expertOutputs', 'order', 'weights'],
  reference: ({ expertOutputs, order, weights }) => [moeCombineReference(expertOutputs, order, weights)],
  fused: {
    outputs: ({ expertOutputs, weights }) => [
      { shape: [weights.shape[0], expertOutputs.shape[1]], dtype: 'float32' },
    ],
    compute: ({ expertOutputs, order, weights }, [out], shapes) => {
      const k = shapes.weights[1];
      const h = shapes.expertOutputs[1];
      moeCombineImpl(expertOutputs as Float32Array, order as Int32Array, weights as Float32Array, k, h, out as Float32Array);
    },
  },
  gradient: 'reference',
  nonDifferentiable: ['order'],
});
