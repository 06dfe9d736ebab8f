/** silu(g) = g · sigmoid(g), written to stay finite for large |g|. */
export function silu(g: number): number {
  return g >= 0 ? g / (1 + Math.exp(-g)) : (g * Math.exp(g)) / (1 + Math.exp(g));
}

/**
 * SwiGLU over flat arrays: for each of `rows` rows of `a` [rows, 2I], `act[i] = silu(a[i]) · a[I+i]`
 * (first half gate, second half up — halves, not interleaved). Offsets allow in-place use on
 * sub-ranges.
 */
export function swigluImpl(a: Float32Array, rows: number, inter: number, act: Float32Array, aOffset = 0, actOffset = 0): void {
  for (let r = 0; r < rows; r++) {
    const src = aOffset + r * 2 * inter;
    const dst = actOffset + r * inter;
    for (let i = 0; i < inter; i++) act[dst + i] = silu(a[src + i]) * a[src + inter + i];
  }
}
