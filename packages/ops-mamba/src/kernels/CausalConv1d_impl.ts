import { silu } from './discretize_impl';

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
  // [K, C]: taps outermost so the channel loop runs over contiguous memory.
  const wT = new Float32Array(K * C);
  for (let c = 0; c < C; c++) for (let k = 0; k < K; k++) wT[k * C + c] = a.weight[c * K + k];
  // Row j of u = [state, x] for one sequence, or null for the zeros before a fresh start.
  const row = (b: number, j: number): [Float32Array, number] | null => {
    if (j >= S) return [a.x, (b * T + j - S) * C];
    return a.convState ? [a.convState, (b * S + j) * C] : null;
  };
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      const y0 = (b * T + t) * C;
      if (a.bias) for (let c = 0; c < C; c++) y[y0 + c] = a.bias[c];
      else for (let c = 0; c < C; c++) y[y0 + c] = 0;
      for (let k = 0; k < K; k++) {
        const r = row(b, t + k); // u index of x_{t−K+1+k}
        if (r === null) continue;
        const [src, s0] = r;
        const w0 = k * C;
        for (let c = 0; c < C; c++) y[y0 + c] += wT[w0 + c] * src[s0 + c];
      }
      if (activation === 'silu') for (let c = 0; c < C; c++) y[y0 + c] = silu(y[y0 + c]);
    }
    for (let j = 0; j < S; j++) {
      const r = row(b, T + j);
      const d0 = (b * S + j) * C;
      if (r === null) newState.fill(0, d0, d0 + C);
      else newState.set(r[0].subarray(r[1], r[1] + C), d0);
    }
  }
  return { y, newState };
}
