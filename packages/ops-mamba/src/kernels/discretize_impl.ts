/**
 * Scalar pieces of the Mamba-2 discretisation shared by the fused kernels
 * (model guide: The Mamba-2 mixer, step 4).
 */

/** PyTorch's softplus: v itself above 20, where log1p(exp(v)) would only add rounding (P23). */
export function softplus(v: number): number {
  return v > 20 ? v : Math.log1p(Math.exp(v));
}

/** d softplus / dv = sigmoid(v), exactly 1 above the threshold. */
export function softplusGrad(v: number): number {
  return v > 20 ? 1 : 1 / (1 + Math.exp(-v));
}

/** dt = clamp(softplus(raw + bias), lo, hi): dt_bias goes in before softplus, the clamp after (P4). */
export function discretizeDt(raw: number, bias: number, lo: number, hi: number): number {
  const s = softplus(raw + bias);
  // biome-ignore lint/complexity/useMathMinMax: the same tests in the same order as the native kernel, in a hot loop
  return s < lo ? lo : s > hi ? hi : s;
}

/** SiLU, x·sigmoid(x). */
export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** d silu / dv = σ(v)·(1 + v·(1 − σ(v))). */
export function siluGrad(v: number): number {
  const s = 1 / (1 + Math.exp(-v));
  return s * (1 + v * (1 - s));
}
