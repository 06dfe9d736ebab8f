import { defineKernel } from '@graniteflow/core';
import { MoeSwiGLU, type MoeSwiGLUAttrs, type MoeSwiGLUInputs } from '../kernel_names';
import { swigluReference } from '../ops/swiglu_reference';
import { swigluImpl } from './MoeSwiGLU_impl';

/** SwiGLU on packed halves: `[..., 2I] → [..., I]`. Gradient: autodiff of the reference. */
export const moeSwiGLUKernel = defineKernel<MoeSwiGLUInputs, MoeSwiGLUAttrs>({
  name: MoeSwiGLU,
  inputNames: ['a'],
  reference: ({ a }) => [swigluReference(a)],
  fused: {
    outputs: ({ a }) => [{ shape: [...a.shape.slice(0, -1), a.shape[a.shape.length - 1] / 2], dtype: 'float32' }],
    compute: ({ a }, [act], shapes) => {
      const last = shapes.a[shapes.a.length - 1];
      swigluImpl(a as Float32Array, a.length / last, last / 2, act as Float32Array);
    },
  },
  gradient: 'reference',
});
