import { discretizeDt, softplus, softplusGrad } from './discretize_impl';
import type { ScanArrays, ScanDims } from './SelectiveScan_impl';

/** Upstream gradients of the scan's two outputs. */
export interface ScanCotangents {
  dy: Float32Array; // [B, T, Hm, P]
  dFinalState: Float32Array; // [B, Hm, P, N]
}

/** Gradients of every float input of the scan (dInitialState is filled even without one). */
export interface ScanGradients {
  x: Float32Array;
  dt: Float32Array;
  A_log: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
  dt_bias: Float32Array;
  initialState: Float32Array;
}

/** Tokens between stored states: the backward pass recomputes at most this many states at a time. */
const CHECKPOINT = 64;

/**
 * Backward pass of the sequential scan, by reverse-mode through the recurrence
 * `S_t = α_t·S_{t−1} + dt_t·x_t⊗B_t`, `y_t = S_t·C_t + D·x_t`, `α_t = exp(dt_t·A)`:
 * with G the gradient reaching S_t (starting from dFinalState), for t = T−1 … 0:
 * `G += dy_t⊗C_t`; `dC_t += dy_tᵀ·S_t`; `dx_t = D·dy_t + dt_t·G·B_t`; `dB_t += dt_t·Gᵀ·x_t`;
 * `d dt_t = ⟨G, x_t⊗B_t⟩ + A·α_t·⟨G, S_{t−1}⟩`; `dA += dt_t·α_t·⟨G, S_{t−1}⟩`; `G ← α_t·G`.
 * The final G is dInitialState. Then dt and A are chained back to the raw dt, dt_bias and A_log.
 *
 * States are checkpointed every 64 tokens during a forward sweep and recomputed chunk by chunk in
 * reverse, so memory stays O((T/64 + 64)·P·N) per head.
 */
export function selectiveScanGradImpl(
  a: ScanArrays,
  g: ScanCotangents,
  dims: ScanDims,
  dtMin: number,
  dtMax: number,
  out?: ScanGradients,
): ScanGradients {
  const { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N } = dims;
  const PN = P * N;
  const grads: ScanGradients = out ?? {
    x: new Float32Array(batch * T * Hm * P),
    dt: new Float32Array(batch * T * Hm),
    A_log: new Float32Array(Hm),
    B: new Float32Array(batch * T * G * N),
    C: new Float32Array(batch * T * G * N),
    D: new Float32Array(Hm),
    dt_bias: new Float32Array(Hm),
    initialState: new Float32Array(batch * Hm * PN),
  };
  // The arrays as locals: the inner loops read no object properties.
  const X = a.x;
  const DT = a.dt;
  const Bm = a.B;
  const Cm = a.C;
  const DY = g.dy;
  const gX = grads.x;
  const gDt = grads.dt;
  const gradB = grads.B;
  const gC = grads.C;
  const hpg = Hm / G;
  const nChunks = Math.ceil(T / CHECKPOINT);
  const checkpoints = new Float64Array(nChunks * PN); // state before token c·64
  const states = new Float64Array((CHECKPOINT + 1) * PN); // one chunk: [before, after each token]
  const grad = new Float64Array(PN); // G
  const dtv = new Float64Array(T);
  const alpha = new Float64Array(T);
  // One token's dB and dC over the head's P rows, added to the outputs once per token.
  const dBt = new Float64Array(N);
  const dCt = new Float64Array(N);
  for (let h = 0; h < Hm; h++) {
    const grp = Math.floor(h / hpg);
    const A = -Math.exp(a.A_log[h]);
    const Dh = a.D[h];
    const bias = a.dt_bias[h];
    let dA = 0;
    let dD = 0;
    let dBias = 0;
    for (let b = 0; b < batch; b++) {
      const s0 = (b * Hm + h) * PN;
      const xAt = (t: number) => ((b * T + t) * Hm + h) * P;
      const bcAt = (t: number) => ((b * T + t) * G + grp) * N;
      for (let t = 0; t < T; t++) {
        dtv[t] = discretizeDt(DT[(b * T + t) * Hm + h], bias, dtMin, dtMax);
        alpha[t] = Math.exp(dtv[t] * A);
      }
      // Forward sweep: keep the state at every chunk start.
      const S = states.subarray(0, PN);
      for (let i = 0; i < PN; i++) S[i] = a.initialState ? a.initialState[s0 + i] : 0;
      for (let t = 0; t < T; t++) {
        if (t % CHECKPOINT === 0) checkpoints.set(S, (t / CHECKPOINT) * PN);
        const x0 = xAt(t);
        const bc0 = bcAt(t);
        for (let p = 0; p < P; p++) {
          const dx = dtv[t] * X[x0 + p];
          for (let n = 0; n < N; n++) S[p * N + n] = alpha[t] * S[p * N + n] + dx * Bm[bc0 + n];
        }
      }
      // Reverse sweep, one chunk at a time.
      for (let i = 0; i < PN; i++) grad[i] = g.dFinalState[s0 + i];
      for (let c = nChunks - 1; c >= 0; c--) {
        const t0 = c * CHECKPOINT;
        const len = Math.min(CHECKPOINT, T - t0);
        states.set(checkpoints.subarray(c * PN, (c + 1) * PN), 0);
        for (let i = 0; i < len; i++) {
          const t = t0 + i;
          const prev = i * PN;
          const next = prev + PN;
          const x0 = xAt(t);
          const bc0 = bcAt(t);
          for (let p = 0; p < P; p++) {
            const dx = dtv[t] * X[x0 + p];
            for (let n = 0; n < N; n++) states[next + p * N + n] = alpha[t] * states[prev + p * N + n] + dx * Bm[bc0 + n];
          }
        }
        for (let i = len - 1; i >= 0; i--) {
          const t = t0 + i;
          const prev = i * PN;
          const cur = prev + PN;
          const x0 = xAt(t);
          const bc0 = bcAt(t);
          const dtt = dtv[t];
          let gxb = 0; // ⟨G, x_t⊗B_t⟩
          let gs = 0; // ⟨G, S_{t−1}⟩
          dBt.fill(0);
          dCt.fill(0);
          for (let p = 0; p < P; p++) {
            const dyp = DY[x0 + p];
            const xp = X[x0 + p];
            const row = p * N;
            let gB = 0;
            for (let n = 0; n < N; n++) {
              const k = row + n;
              const gk = grad[k] + dyp * Cm[bc0 + n];
              grad[k] = gk;
              dCt[n] += dyp * states[cur + k];
              dBt[n] += gk * xp;
              gB += gk * Bm[bc0 + n];
              gs += gk * states[prev + k];
            }
            gxb += gB * xp;
            gX[x0 + p] = Dh * dyp + dtt * gB;
            dD += dyp * xp;
          }
          for (let n = 0; n < N; n++) {
            gC[bc0 + n] += dCt[n];
            gradB[bc0 + n] += dtt * dBt[n];
          }
          const ddt = gxb + A * alpha[t] * gs;
          dA += dtt * alpha[t] * gs;
          // Chain dt = clamp(softplus(raw + bias)) back to the raw time step and dt_bias.
          const v = DT[(b * T + t) * Hm + h] + bias;
          const sp = softplus(v);
          const dRaw = sp >= dtMin && sp <= dtMax ? ddt * softplusGrad(v) : 0;
          gDt[(b * T + t) * Hm + h] = dRaw;
          dBias += dRaw;
          for (let k = 0; k < PN; k++) grad[k] *= alpha[t];
        }
      }
      for (let i = 0; i < PN; i++) grads.initialState[s0 + i] = grad[i];
    }
    grads.A_log[h] = dA * A; // A = −exp(A_log): dA/dA_log = A
    grads.D[h] = dD;
    grads.dt_bias[h] = dBias;
  }
  return grads;
}
