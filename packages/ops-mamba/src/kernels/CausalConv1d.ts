import { defineKernel, nativeKernel } from '@graniteflow/core';
import { CausalConv1d, type CausalConv1dAttrs, type CausalConv1dInputs } from '../kernel_names';
import { causalConv1dReference } from '../ops/causal_conv1d_reference';
import { causalConv1dImpl } from './CausalConv1d_impl';
import { f32, f32Opt } from './flat';

/** CausalConv1d: depthwise causal conv with a K−1 raw-input state; fused on cpu and wasm, native on native. */
export const causalConv1dKernel = defineKernel<CausalConv1dInputs, CausalConv1dAttrs>({
  name: CausalConv1d,
  inputNames: ['x', 'weight', 'bias', 'convState'],
  reference: causalConv1dReference,
  fused: {
    outputs: ({ x, weight }) => [
      { shape: x.shape, dtype: 'float32' }, // y [B, T, C]
      { shape: [x.shape[0], weight.shape[1] - 1, x.shape[2]], dtype: 'float32' }, // [B, K−1, C]
    ],
    compute: (a, [y, newState], shapes, attrs) => {
      const [batch, T, C] = shapes.x;
      causalConv1dImpl(
        {
          x: f32(a.x, 'x'),
          weight: f32(a.weight, 'weight'),
          bias: f32Opt(a.bias, 'bias'),
          convState: f32Opt(a.convState, 'convState'),
        },
        { batch, seqLen: T, channels: C, kernelSize: shapes.weight[1] },
        attrs.activation,
        { y: f32(y, 'y'), newState: f32(newState, 'newState') },
      );
    },
  },
  backendKernels: {
    native: nativeKernel<CausalConv1dAttrs>((addon, a, { activation }) => {
      const [batch, T, C] = a.x.shape;
      const K = a.weight.shape[1];
      const y = new Float32Array(batch * T * C);
      const newState = new Float32Array(batch * (K - 1) * C);
      addon.causalConv1d(
        {
          x: f32(a.x.values, 'x'),
          weight: f32(a.weight.values, 'weight'),
          bias: f32Opt(a.bias?.values, 'bias'),
          convState: f32Opt(a.convState?.values, 'convState'),
        },
        { batch, seqLen: T, channels: C, kernelSize: K },
        activation,
        { y, newState },
      );
      return [
        { shape: a.x.shape, values: y },
        { shape: [batch, K - 1, C], values: newState },
      ];
    }),
  },
  gradient: 'reference',
});
