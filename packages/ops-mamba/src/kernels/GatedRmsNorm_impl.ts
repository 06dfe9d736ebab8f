import { silu } from './discretize_impl';

/**
 * Gated RMSNorm, gate before norm (P7): `g = y·silu(z)`, then each group of `groupSize` channels
 * is scaled by 1/sqrt(mean(g²) + eps) and multiplied by `weight`. `groupSize = D` is HF's
 * full-width norm (P12). Arrays are [rows, D] flattened; returns [rows, D].
 */
export function gatedRmsNormImpl(
  y: Float32Array,
  z: Float32Array,
  weight: Float32Array,
  dim: number,
  groupSize: number,
  eps: number,
  out?: Float32Array,
): Float32Array {
  const o = out ?? new Float32Array(y.length);
  const rows = y.length / dim;
  const groups = dim / groupSize;
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < groups; q++) {
      const i0 = r * dim + q * groupSize;
      let sumSq = 0;
      for (let i = 0; i < groupSize; i++) {
        const g = y[i0 + i] * silu(z[i0 + i]);
        o[i0 + i] = g;
        sumSq += g * g;
      }
      const inv = 1 / Math.sqrt(sumSq / groupSize + eps);
      const w0 = q * groupSize;
      for (let i = 0; i < groupSize; i++) o[i0 + i] *= inv * weight[w0 + i];
    }
  }
  return o;
}
