/**
 * Top-k routing over flat arrays. For each row of `logits` [N, E]: the k largest logits in
 * descending order, ties broken by the lower expert index; weights = softmax over those k values.
 *
 * Scanning experts in ascending order and displacing only on a strictly larger value is what makes
 * ties go to the lower index. NaN never displaces anything (comparisons with NaN are false).
 */
export function topKRouterImpl(logits: Float32Array, n: number, e: number, k: number, weights: Float32Array, indices: Int32Array): void {
  const vals = new Float64Array(k);
  const idx = new Int32Array(k);
  for (let row = 0; row < n; row++) {
    const base = row * e;
    let count = 0;
    for (let j = 0; j < e; j++) {
      const v = logits[base + j];
      if (count === k && !(v > vals[k - 1])) continue;
      // First position holding a strictly smaller value; equal values stay ahead (lower index).
      let p = count < k ? count : k - 1;
      while (p > 0 && v > vals[p - 1]) p--;
      const last = count < k ? count : k - 1;
      for (let q = last; q > p; q--) {
        vals[q] = vals[q - 1];
        idx[q] = idx[q - 1];
      }
      vals[p] = v;
      idx[p] = j;
      if (count < k) count++;
    }
    const max = vals[0];
    let total = 0;
    for (let j = 0; j < k; j++) total += Math.exp(vals[j] - max);
    const out = row * k;
    for (let j = 0; j < k; j++) {
      weights[out + j] = Math.exp(vals[j] - max) / total;
      indices[out + j] = idx[j];
    }
  }
}
