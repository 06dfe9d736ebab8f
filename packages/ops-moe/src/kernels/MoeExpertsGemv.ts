import { defineKernel, reserveHeapScratch, vjp } from '@graniteflow/core';
import { MoeExpertsGemv, type MoeExpertsGemvAttrs, type MoeExpertsGemvInputs } from '../kernel_names';
import { groupedExperts } from '../ops/grouped_experts';
import { jsMatVec, moeExpertsGemvImpl } from './MoeExpertsGemv_impl';
import { expertGemvSimd } from './simd/expert_gemv_simd';

/**
 * Routed experts from the packed weights, read in place: on wasm the rows of the selected experts
 * go through a WebAssembly SIMD matrix-vector routine on the tfjs heap (no copy, unselected experts
 * untouched); on cpu through plain JS loops. Its cost is N·k expert reads (memory-bound); on wasm it
 * beats the grouped matMul path at every measured token count (1 to 512). Gradient: autodiff of the grouped path.
 */
export const moeExpertsGemvKernel = defineKernel<MoeExpertsGemvInputs, MoeExpertsGemvAttrs>({
  name: MoeExpertsGemv,
  inputNames: ['x', 'inputLinear', 'outputLinear', 'indices', 'weights'],
  // The grouped path (stock matMul/slice plus this package's differentiable dispatch kernels):
  // the naive per-slot reference would need UnsortedSegmentSum to differentiate, absent on wasm.
  reference: ({ x, inputLinear, outputLinear, indices, weights }) => [groupedExperts(x, inputLinear, outputLinear, indices, weights)],
  fused: {
    outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
    compute: ({ x, inputLinear, outputLinear, indices, weights }, [y], shapes) => {
      const [n, h] = shapes.x;
      const [, twoI] = shapes.inputLinear;
      const i = twoI / 2;
      const k = shapes.indices[1];
      const dims = { n, h, i, k };
      const args = [
        x as Float32Array,
        inputLinear as Float32Array,
        outputLinear as Float32Array,
        indices as Int32Array,
        weights as Float32Array,
        y as Float32Array,
        dims,
      ] as const;
      // The scratch must already be reserved: reserving here could grow the heap under our views.
      const simd = expertGemvSimd([x, inputLinear, outputLinear, y], 3 * i);
      if (simd !== null) {
        moeExpertsGemvImpl(...args, simd.scratch, simd.scratch, simd.matVec, 0, 2 * i);
      } else {
        moeExpertsGemvImpl(...args, new Float32Array(2 * i), new Float32Array(i), jsMatVec);
      }
    },
  },
  gradient: ([dy], { x, inputLinear, outputLinear, indices, weights }) => {
    const [dx, d1, d2, dw] = vjp(
      (xx, a, b, w) => groupedExperts(xx, a, b, indices, w, { splitWeights: true }),
      [x, inputLinear, outputLinear, weights],
      dy,
    );
    return { x: dx, inputLinear: d1, outputLinear: d2, weights: dw };
  },
  nonDifferentiable: ['indices'],
});

/** Reserves the wasm scratch the fused kernel needs for intermediate size `i` (call before running it). */
export function reserveGemvScratch(i: number): void {
  reserveHeapScratch(3 * i);
}
