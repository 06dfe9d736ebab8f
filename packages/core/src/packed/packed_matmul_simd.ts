import type { FlatArray } from '../kernels/fused_kernel';
import { countSimdCall, simdKernels } from '../kernels/simd_module';
import { QUANT_BLOCK, type PackedFormat } from './formats';

/** The kernel family `assembly/packed_matvec.ts`: every pointer a heap byte address. */
export interface PackedMatvecExports {
  quantize_rows(x: number, n: number, k: number, qmax: number, scales: number, quants: number): void;
  matmul_q8_0(w: number, out: number, k: number, scales: number, quants: number, n: number, y: number): void;
  matmul_q4_0(w: number, out: number, k: number, scales: number, quants: number, n: number, y: number): void;
  matmul_q8_0_f32(w: number, out: number, k: number, x: number, n: number, y: number): void;
  matmul_q4_0_f32(w: number, out: number, k: number, x: number, n: number, y: number): void;
  matmul_bf16(w: number, out: number, k: number, x: number, n: number, y: number): void;
}

export const PACKED_MATVEC = 'packed_matvec';

/**
 * The integer range activations are quantized to before the integer dot products. The i16 lanes of
 * `i32x4.dot_i16x8_s` hold it at no extra cost over llama.cpp's int8 (127), with 258× less rounding
 * error: |x − d·round(x/d)| ≤ d/2 = amax/65534 per 32-block. No overflow: a lane sums 8 products
 * of |q_w| ≤ 128 and |q_x| ≤ 32767 per block, 3.4e7 < 2^31.
 */
export const ACTIVATION_QMAX = 32767;

const align16 = (n: number) => (n + 15) & ~15;

/** Bytes of scratch for `n` quantized activation rows of `k`: 16-aligned scales, then int16 quants. */
function scratchLayout(n: number, k: number): { quantsAt: number; bytes: number } {
  const quantsAt = align16(4 * n * (k / QUANT_BLOCK));
  return { quantsAt, bytes: quantsAt + 2 * n * k };
}

/**
 * y [n, out] = x [n, in] · Wᵀ with the WebAssembly SIMD kernels, reading the packed bytes where they
 * lie in the wasm heap. Returns false (nothing done; run the JS body) when SIMD may not run here
 * (see {@link simdKernels}) or the heap cannot give the scratch space.
 */
export function packedMatMulSimd(
  x: FlatArray,
  w: FlatArray,
  y: FlatArray,
  format: PackedFormat,
  outFeatures: number,
  inFeatures: number,
): boolean {
  const simd = simdKernels<PackedMatvecExports>(PACKED_MATVEC, [x, w, y]);
  if (simd === null) return false;
  const n = x.length / inFeatures;
  // Addresses now: the malloc below may grow the memory, which detaches these views.
  const xAt = x.byteOffset,
    wAt = w.byteOffset,
    yAt = y.byteOffset;
  const kernels = simd.exports;
  if (format === 'bf16') {
    kernels.matmul_bf16(wAt, outFeatures, inFeatures, xAt, n, yAt);
  } else {
    const { quantsAt, bytes } = scratchLayout(n, inFeatures);
    const block = simd.heap.malloc(bytes + 15);
    if (block === 0) {
      if (x.buffer === simd.heap.memory.buffer) return false; // nothing grew: the views still hold
      throw new RangeError(`PackedMatMul: the wasm heap could not give ${bytes} bytes of scratch for ${n} activation rows.`);
    }
    try {
      const scales = align16(block);
      kernels.quantize_rows(xAt, n, inFeatures, ACTIVATION_QMAX, scales, scales + quantsAt);
      const matmul = format === 'q8_0' ? kernels.matmul_q8_0 : kernels.matmul_q4_0;
      matmul(wAt, outFeatures, inFeatures, scales, scales + quantsAt, n, yAt);
    } finally {
      simd.heap.free(block);
    }
  }
  countSimdCall(`PackedMatMul/${format}`);
  return true;
}
