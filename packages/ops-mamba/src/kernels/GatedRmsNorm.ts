import { defineKernel, nativeKernel } from '@graniteflow/core';
import { GatedRmsNorm, type GatedRmsNormAttrs, type GatedRmsNormInputs } from '../kernel_names';
import { gatedRmsNormReference } from '../ops/gated_rms_norm_reference';
import { f32 } from './flat';
import { gatedRmsNormImpl } from './GatedRmsNorm_impl';

/** GatedRmsNorm: y·silu(z), RMS-normalised per group, times weight; fused on cpu and wasm, native on native. */
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
  backendKernels: {
    native: nativeKernel<GatedRmsNormAttrs>((addon, a, { groupSize, eps }) => {
      const y = f32(a.y.values, 'y');
      const dim = a.weight.shape[0];
      const out = new Float32Array(y.length);
      addon.gatedRmsNorm(y, f32(a.z.values, 'z'), f32(a.weight.values, 'weight'), y.length / dim, dim, groupSize, eps, out);
      return { shape: a.y.shape, values: out };
    }),
  },
  gradient: 'reference',
});
