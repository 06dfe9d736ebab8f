import { defineKernel, nativeKernel } from '@graniteflow/core';
import { MoeSwiGLU, type MoeSwiGLUAttrs, type MoeSwiGLUInputs } from '../kernel_names';
import { swigluReference } from '../ops/swiglu_reference';
import { swigluImpl } from './MoeSwiGLU_impl';

/** `[..., 2I] → [..., I]`: the input's leading axes with the last halved. */
function swigluShape(shape: readonly number[]): number[] {
  return [...shape.slice(0, -1), shape[shape.length - 1] / 2];
}

/**
 * SwiGLU on packed halves: `[..., 2I] → [..., I]`. Fused on cpu and wasm (JavaScript), native on
 * native (`@graniteflow/native`'s SIMD `swiglu`). Gradient: autodiff of the reference.
 */
export const moeSwiGLUKernel = defineKernel<MoeSwiGLUInputs, MoeSwiGLUAttrs>({
  name: MoeSwiGLU,
  inputNames: ['a'],
  reference: ({ a }) => [swigluReference(a)],
  fused: {
    outputs: ({ a }) => [{ shape: swigluShape(a.shape), dtype: 'float32' }],
    compute: ({ a }, [act], shapes) => {
      const last = shapes.a[shapes.a.length - 1];
      swigluImpl(a as Float32Array, a.length / last, last / 2, act as Float32Array);
    },
  },
  backendKernels: {
    native: nativeKernel<MoeSwiGLUAttrs>((addon, { a }) => {
      if (!(a.values instanceof Float32Array)) throw new TypeError('MoeSwiGLU (native): a must be float32');
      const rows = a.shape.slice(0, -1).reduce((n, d) => n * d, 1);
      const act = new Float32Array(a.values.length / 2);
      addon.swiglu(a.values, rows, a.shape[a.shape.length - 1] / 2, act);
      return { shape: swigluShape(a.shape), values: act };
    }),
  },
  gradient: 'reference',
});
