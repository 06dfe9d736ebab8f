import { countSimdCall, simdKernels } from '../kernels/simd_module';
import type { AttentionArrays, AttentionAttrs } from './attention_kernel';

/** The kernel family `assembly/attention.ts`: every pointer a heap byte address. */
interface AttentionExports {
  attention(
    q: number,
    k: number,
    v: number,
    mask: number,
    out: number,
    acc: number,
    batch: number,
    time: number,
    heads: number,
    kvHeads: number,
    hd: number,
    keyLength: number,
    capacity: number,
    causal: number,
    headsMajor: number,
    scale: number,
  ): void;
}

export const ATTENTION_SIMD = 'attention';

/**
 * The attention kernel's body with WebAssembly SIMD, on the arrays where they lie in the wasm heap.
 * Returns false (nothing done; run the JavaScript body) when SIMD may not run here (see
 * `simdKernels`), the head dim is not a multiple of 4, or the heap cannot give the scratch row.
 */
export function attentionSimd(
  { q, k, v, keyMask, out }: AttentionArrays,
  [batch, time, heads, hd]: number[],
  kShape: number[],
  { scale, keyLength, causal, headsMajor }: AttentionAttrs,
): boolean {
  if (hd % 4 !== 0) return false;
  const simd = simdKernels<AttentionExports>(ATTENTION_SIMD, keyMask ? [q, k, v, keyMask, out] : [q, k, v, out]);
  if (simd === null) return false;
  const [capacity, kvHeads] = headsMajor ? [kShape[2], kShape[1]] : [kShape[1], kShape[2]];
  // Addresses now: the malloc below may grow the memory, which detaches these views.
  const at = { q: q.byteOffset, k: k.byteOffset, v: v.byteOffset, mask: keyMask ? keyMask.byteOffset : 0, out: out.byteOffset };
  const block = simd.heap.malloc(4 * hd + 15);
  if (block === 0) return false;
  try {
    simd.exports.attention(
      at.q,
      at.k,
      at.v,
      at.mask,
      at.out,
      (block + 15) & ~15,
      batch,
      time,
      heads,
      kvHeads,
      hd,
      keyLength,
      capacity,
      causal ? 1 : 0,
      headsMajor ? 1 : 0,
      scale,
    );
  } finally {
    simd.heap.free(block);
  }
  countSimdCall('Attention');
  return true;
}
