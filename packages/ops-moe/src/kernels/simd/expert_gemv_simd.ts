import * as path from 'node:path';
import { countSimdCall, heapScratch, simdKernels, type SimdModuleSource } from '@graniteflow/core';
import type { MatVec } from '../MoeExpertsGemv_impl';

/** This package's WebAssembly SIMD modules: `wasm/` at the package root (built from `assembly/`). */
export const OPS_MOE_SIMD_MODULES: SimdModuleSource = {
  packageName: '@graniteflow/ops-moe',
  dir: path.join(__dirname, '..', '..', '..', 'wasm'),
};

/** The functions of `assembly/expert_gemv.ts`; every pointer is a heap byte address. */
export interface ExpertGemvExports {
  /** y[r] = alpha · Σ_c W[r, c] · x[c] + beta · y[r] for r < rows. */
  gemv(w: number, x: number, y: number, rows: number, cols: number, alpha: number, beta: number): void;
  /** Σ of `n` float32 from `ptr` (the benchmark's memory-read floor). */
  sum(ptr: number, n: number): number;
}
export const EXPERT_GEMV = 'expert_gemv';

/** Counter name of the SIMD expert gemv in core's `simdCounters()`. */
export const EXPERT_GEMV_SIMD_CALL = 'MoeExpertsGemv';

/**
 * The SIMD matrix-vector routine over heap arrays and `scratchFloats` of reserved heap scratch, or
 * null (run the JS loops) when SIMD cannot run here (core's `simdKernels`: not wasm, SIMD off, an
 * array not on the heap) or the scratch was not reserved beforehand. Counts one SIMD call.
 */
export function expertGemvSimd(views: readonly ArrayBufferView[], scratchFloats: number): { matVec: MatVec; scratch: Float32Array } | null {
  const simd = simdKernels<ExpertGemvExports>(EXPERT_GEMV, views, OPS_MOE_SIMD_MODULES);
  if (simd === null) return null;
  const scratch = heapScratch(simd.heap, scratchFloats);
  if (scratch === null) return null;
  countSimdCall(EXPERT_GEMV_SIMD_CALL);
  const { gemv } = simd.exports;
  const matVec: MatVec = (w, wOff, x, xOff, y, yOff, rows, cols, alpha, beta) =>
    gemv(w.byteOffset + wOff * 4, x.byteOffset + xOff * 4, y.byteOffset + yOff * 4, rows, cols, alpha, beta);
  return { matVec, scratch };
}
