/** Sizes of one causal conv. */
export interface ConvDims {
  batch: number;
  seqLen: number;
  channels: number;
  /** K */
  kernelSize: number;
}

/** Flat inputs of {@link causalConv1dImpl}. */
export interface ConvArrays {
  x: Float32Array; // [B, T, C]
  weight: Float32Array; // [C, K]
  bias?: Float32Array; // [C]
  convState?: Float32Array; // [B, K−1, C]
}

/**
 * Causal depthwise conv over time, channels-last: `y_t[c] = act(bias[c] + Σ_k w[c,k]·u_{t−K+1+k}[c])`
 * where u is [convState, x] (zeros before the start when there is no state), so tap K−1 is the
 * current token (P3). Also returns the last K−1 raw inputs of u, the state to continue from (P22).
 */
export function causalConv1dImpl(
  a: ConvArrays,
  dims: ConvDims,
  activation: 'silu' | 'none',
  out?: { y: Float32Array; newState: Float32Array },
): { y: Float32Array; newState: Float32Array } {
  const { batch, seqLen: T, channels: C, kernelSize: K } = dims;
  const S = K - 1;
  const y = out?.y ?? new Float32Array(batch * T * C);
  const newState = out?.newState ?? new Float32Array(batch * S * C);
  const { x, weight, bias, convState } = a;
  // [K, C]: taps outermost so every inner loop runs over contiguous channels.
  const wT = new Float32Array(K * C);
  for (let c = 0; c < C; c++) for (let k = 0; k < K; k++) wT[k * C + c] = weight[c * K + k];
  // u = [state or zeros, x] for one sequence, [S + T, C]: one copy makes every tap a plain offset.
  const u = new Float32Array((S + T) * C);
  for (let b = 0; b < batch; b++) {
    if (convState) u.set(convState.subarray(b * S * C, (b + 1) * S * C));
    else u.fill(0, 0, S * C);
    u.set(x.subarray(b * T * C, (b + 1) * T * C), S * C);
    for (let t = 0; t < T; t++) {
      const y0 = (b * T + t) * C;
      if (bias) y.set(bias, y0);
      else y.fill(0, y0, y0 + C);
      for (let k = 0; k < K; k++) {
        const u0 = (t + k) * C; // row of x_{t−K+1+k}
        const w0 = k * C;
        for (let c = 0; c < C; c++) y[y0 + c] += wT[w0 + c] * u[u0 + c];
      }
      if (activation === 'silu') {
        for (let c = 0; c < C; c++) {
          const v = y[y0 + c];
          y[y0 + c] = v / (1 + Math.exp(-v));
        }
      }
    }
    newState.set(u.subarray(T * C, (T + S) * C), b * S * C);
  }
  return { y, newState };
}
