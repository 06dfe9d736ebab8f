/**
 * Readable float64 oracles written for the tests: a per-token recurrence, a direct conv and a
 * direct gated norm, independent of the package's kernels. Also a finite-difference helper.
 */

export interface NaiveScanInputs {
  x: ArrayLike<number>; // [B, T, Hm, P]
  dt: ArrayLike<number>; // [B, T, Hm]
  A_log: ArrayLike<number>;
  B: ArrayLike<number>; // [B, T, G, N]
  C: ArrayLike<number>;
  D: ArrayLike<number>;
  dt_bias: ArrayLike<number>;
  initialState?: ArrayLike<number>; // [B, Hm, P, N]
}

export interface Dims {
  batch: number;
  T: number;
  Hm: number;
  P: number;
  G: number;
  N: number;
}

const softplus = (v: number) => (v > 20 ? v : Math.log1p(Math.exp(v)));

/** One token at a time, exactly the recurrence (model guide: The Mamba-2 mixer, step 5). */
export function naiveScan(
  a: NaiveScanInputs,
  d: Dims,
  [lo, hi]: [number, number] = [0, Infinity],
): { y: Float64Array; finalState: Float64Array } {
  const { batch, T, Hm, P, G, N } = d;
  const y = new Float64Array(batch * T * Hm * P);
  const S = new Float64Array(batch * Hm * P * N);
  if (a.initialState) for (let i = 0; i < S.length; i++) S[i] = a.initialState[i];
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hm; h++) {
        const g = Math.floor(h / (Hm / G));
        const dt = Math.min(hi, Math.max(lo, softplus(a.dt[(b * T + t) * Hm + h] + a.dt_bias[h])));
        const A = -Math.exp(a.A_log[h]);
        for (let p = 0; p < P; p++) {
          const xv = a.x[((b * T + t) * Hm + h) * P + p];
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const si = ((b * Hm + h) * P + p) * N + n;
            const bc = ((b * T + t) * G + g) * N + n;
            S[si] = Math.exp(dt * A) * S[si] + dt * xv * a.B[bc];
            acc += S[si] * a.C[bc];
          }
          y[((b * T + t) * Hm + h) * P + p] = acc + a.D[h] * xv;
        }
      }
    }
  }
  return { y, finalState: S };
}

/** Direct causal conv: u = [state or zeros, x], y_t = act(bias + Σ_k w[c,k]·u_{t+k}). */
export function naiveConv(
  x: ArrayLike<number>, // [B, T, C]
  w: ArrayLike<number>, // [C, K]
  dims: { batch: number; T: number; C: number; K: number },
  bias?: ArrayLike<number>,
  state?: ArrayLike<number>, // [B, K−1, C]
  silu = true,
): { y: Float64Array; state: Float64Array } {
  const { batch, T, C, K } = dims;
  const S = K - 1;
  const u = (b: number, j: number, c: number) => (j >= S ? x[(b * T + j - S) * C + c] : state ? state[(b * S + j) * C + c] : 0);
  const y = new Float64Array(batch * T * C);
  const ns = new Float64Array(batch * S * C);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < T; t++) {
        let v = bias ? bias[c] : 0;
        for (let k = 0; k < K; k++) v += w[c * K + k] * u(b, t + k, c);
        y[(b * T + t) * C + c] = silu ? v / (1 + Math.exp(-v)) : v;
      }
      for (let j = 0; j < S; j++) ns[(b * S + j) * C + c] = u(b, T + j, c);
    }
  }
  return { y, state: ns };
}

/** Direct gated RMSNorm over groups of `gs` channels. */
export function naiveGatedNorm(
  y: ArrayLike<number>,
  z: ArrayLike<number>,
  w: ArrayLike<number>,
  D: number,
  gs: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(y.length);
  for (let r = 0; r < y.length / D; r++) {
    for (let q = 0; q < D / gs; q++) {
      let ss = 0;
      const g: number[] = [];
      for (let i = 0; i < gs; i++) {
        const j = r * D + q * gs + i;
        const v = y[j] * (z[j] / (1 + Math.exp(-z[j])));
        g.push(v);
        ss += v * v;
      }
      const inv = 1 / Math.sqrt(ss / gs + eps);
      for (let i = 0; i < gs; i++) out[r * D + q * gs + i] = g[i] * inv * w[q * gs + i];
    }
  }
  return out;
}

/**
 * Central finite differences of a float64 scalar function of several arrays, with respect to
 * every element of each array: [∂f/∂arrays[0], ∂f/∂arrays[1], …].
 */
export function finiteDifferences(f: (arrays: Float64Array[]) => number, arrays: Float64Array[], h = 1e-5): Float64Array[] {
  return arrays.map((arr) => {
    const g = new Float64Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const v = arr[i];
      arr[i] = v + h;
      const up = f(arrays);
      arr[i] = v - h;
      const down = f(arrays);
      arr[i] = v;
      g[i] = (up - down) / (2 * h);
    }
    return g;
  });
}

/** Σ a·w over all elements. */
export function dot(a: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * w[i];
  return s;
}
