import { discretizeDt } from './discretize_impl';

/** Sizes of one selective scan. */
export interface ScanDims {
  batch: number;
  seqLen: number;
  /** Hm */
  heads: number;
  /** P */
  headDim: number;
  /** G */
  groups: number;
  /** N */
  stateSize: number;
}

/** Flat inputs of {@link selectiveScanImpl} (layouts as in `SelectiveScanInputs`). */
export interface ScanArrays {
  x: Float32Array; // [B, T, Hm, P]
  dt: Float32Array; // [B, T, Hm] raw
  A_log: Float32Array; // [Hm]
  B: Float32Array; // [B, T, G, N]
  C: Float32Array; // [B, T, G, N]
  D: Float32Array; // [Hm]
  dt_bias: Float32Array; // [Hm]
  initialState?: Float32Array; // [B, Hm, P, N]
}

/** Outputs of {@link selectiveScanImpl}. */
export interface ScanOutputs {
  y: Float32Array; // [B, T, Hm, P]
  finalState: Float32Array; // [B, Hm, P, N]
}

/**
 * The Mamba-2 selective scan as the plain sequential recurrence (model guide: The Mamba-2 mixer,
 * step 5): `S_t = exp(dt·A)·S_{t−1} + dt·x_t⊗B_t`, `y_t = S_t·C_t + D·x_t`, head h reading group
 * ⌊h/(Hm/G)⌋ (P12). Exact and O(B·T·Hm·P·N); the state of each head lives in `finalState` while it
 * is scanned, so no scratch memory is needed.
 */
export function selectiveScanImpl(a: ScanArrays, dims: ScanDims, dtMin: number, dtMax: number, out?: ScanOutputs): ScanOutputs {
  const { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N } = dims;
  const y = out?.y ?? new Float32Array(batch * T * Hm * P);
  const finalState = out?.finalState ?? new Float32Array(batch * Hm * P * N);
  const hpg = Hm / G;
  const PN = P * N;
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < Hm; h++) {
      const g = Math.floor(h / hpg);
      const A = -Math.exp(a.A_log[h]);
      const Dh = a.D[h];
      const bias = a.dt_bias[h];
      const s0 = (b * Hm + h) * PN;
      if (a.initialState) {
        for (let i = 0; i < PN; i++) finalState[s0 + i] = a.initialState[s0 + i];
      } else {
        for (let i = 0; i < PN; i++) finalState[s0 + i] = 0;
      }
      for (let t = 0; t < T; t++) {
        const bt = b * T + t;
        const dt = discretizeDt(a.dt[bt * Hm + h], bias, dtMin, dtMax);
        const decay = Math.exp(dt * A); // hoisted per (t, h): the only transcendental in the loop
        const bc0 = (bt * G + g) * N; // B_t[g], C_t[g]
        const x0 = (bt * Hm + h) * P;
        for (let p = 0; p < P; p++) {
          const xv = a.x[x0 + p];
          const dx = dt * xv;
          const sp = s0 + p * N;
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const s = decay * finalState[sp + n] + dx * a.B[bc0 + n];
            finalState[sp + n] = s;
            acc += s * a.C[bc0 + n];
          }
          y[x0 + p] = acc + Dh * xv;
        }
      }
    }
  }
  return { y, finalState };
}
