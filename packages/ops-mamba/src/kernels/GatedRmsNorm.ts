import { defineKernel } from '@graniteflow/core';
import { GatedRmsNorm, type GatedRmsNormAttrs, type GatedRmsNormInputs } from '../kernel_names';
import { gatedRmsNormReference } from '../ops/gated_rms_norm_reference';
import { f32 } from './flat';
import { gatedRmsNormImpl } from './GatedRmsNorm_impl';

/** GatedRmsNorm: y·silu(z), RMS-normalised per group, times weight; fused on cpu and wasm. */
export const gatedRmsNormKernel = defineKernel<GatedRmsNormInputs, GatedRmsNormAttrs>({
  name: GatedRmsNorm,
  inputNames: ['y', 'z', 'weight'],
  reference: gatedRmsNormReference,
  fused: {
    outputs: ({ y }) => [{ shape: y.shape, dtype: 'float32' }],
    compute: (a, [out], shapes, attrs) => {
      const dim = shapes.weight[0];
      gatedRmsNormImpl(f32(a.y, 'y'), f32(a.z, 'z'), f32(a.weight, 'weight'), dim, attrs.groupSize, attrs.eps, f32(out, 'out'));
    },
  },
  gradient: 'reference',
});
