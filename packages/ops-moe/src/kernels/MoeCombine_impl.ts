/**
 * Combine over flat arrays: `out[n] += weights[s] · expertOutputs[p]` for every sorted row p with
 * slot `s = order[p]` and token `n = s / k`. `out` [N, H] arrives zero-filled.
 */
export function moeCombineImpl(
  expertOutputs: Float32Array,
  order: Int32Array,
  weights: Float32Array,
  k: number,
  h: number,
  out: Float32Array,
): void {
  for (let p = 0; p < order.length; p++) {
    const s = order[p];
    const w = weights[s];
    const dst = Math.floor(s / k) * h;
    const src = p * h;
    for (let c = 0; c < h; c++) out[dst + c] += w * expertOutputs[src + c];
  }
}
