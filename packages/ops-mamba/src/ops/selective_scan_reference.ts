import * as tf from '@tensorflow/tfjs-core';
import type { SelectiveScanAttrs, SelectiveScanInputs } from '../kernel_names';
import { decayRateReference, discretizeDtReference } from './discretize_reference';

/** [Q, Q] with ones where column − row ≥ offset, zeros elsewhere. */
function upperTriangle(Q: number, offset: number): tf.Tensor {
  const m = new Float32Array(Q * Q);
  for (let r = 0; r < Q; r++) for (let c = r + offset; c < Q; c++) m[r * Q + c] = 1;
  return tf.tensor2d(m, [Q, Q]);
}

/**
 * exp of the segment sums of `a` [..., Q], laid out transposed: out[..., s, l] =
 * exp(Σ_{i=s+1}^{l} a_i) for l ≥ s and exactly 0 for l < s (P24). The sums come from a masked
 * cumulative sum (as HF does) rather than Acum[l] − Acum[s]: more accurate, and no −∞ ever enters
 * the graph, so gradients stay finite. The [s, l] layout keeps the cumsum on the last axis: tfjs
 * 4.22's cumsum gradient transposes its result wrongly for any other axis.
 */
function segmentSumExpT(a: tf.Tensor, Q: number): tf.Tensor {
  return tf.tidy(() => {
    const rep = tf.mul(tf.expandDims(a, -2), upperTriangle(Q, 1)); // [..., Q(s), Q(l)] = a_l for l > s
    const seg = tf.cumsum(rep, rep.rank - 1); // Σ_{s < i ≤ l} a_i (tfjs cumsum wants a non-negative axis)
    return tf.mul(tf.exp(seg), upperTriangle(Q, 0));
  });
}

/**
 * The selective scan composed from stock tfjs ops in the chunked SSD form
 * (model guide: The chunked form of the scan; after mamba_ssm's `ssd_minimal`): intra-chunk outputs
 * as masked matmuls, chunk-local end states, a short sequential recurrence over chunks, then the
 * state-to-output term. Differentiable by tfjs autodiff; the fallback on backends without a fused
 * kernel and the oracle in tests.
 *
 * Heads are kept as [G, hpg] so that C·Bᵀ is computed once per group, not once per head.
 */
export function selectiveScanReference(inputs: SelectiveScanInputs, attrs: SelectiveScanAttrs): tf.Tensor[] {
  const { x, dt: dtRaw, A_log, B, C, D, dt_bias, initialState } = inputs;
  const [batch, T, Hm, P] = x.shape;
  const [, , G, N] = B.shape;
  const hpg = Hm / G;
  const Q = Math.max(1, Math.min(attrs.chunkSize, T));
  const nc = Math.ceil(T / Q);
  const pad = nc * Q - T;
  return tf.tidy(() => {
    const dt = discretizeDtReference(dtRaw, dt_bias, attrs.dtMin, attrs.dtMax); // [B, T, Hm]
    const a = tf.mul(dt, decayRateReference(A_log)); // [B, T, Hm], ≤ 0
    const xd = tf.mul(x, tf.expandDims(dt, -1)); // [B, T, Hm, P]
    // Zero padding is neutral (P13): a = 0 keeps the state, xd = 0 adds nothing.
    const padT = (t: tf.Tensor) => (pad ? tf.pad(t, [[0, 0], [0, pad], ...t.shape.slice(2).map(() => [0, 0] as [number, number])]) : t);
    const aC = tf.transpose(tf.reshape(padT(a), [batch, nc, Q, Hm]), [0, 3, 1, 2]); // [B, Hm, nc, Q]
    const xdC = tf.transpose(tf.reshape(padT(xd), [batch, nc, Q, G, hpg, P]), [0, 1, 3, 4, 2, 5]); // [B, nc, G, hpg, Q, P]
    const bC = tf.transpose(tf.reshape(padT(B), [batch, nc, Q, G, N]), [0, 1, 3, 2, 4]); // [B, nc, G, Q, N]
    const cC = tf.transpose(tf.reshape(padT(C), [batch, nc, Q, G, N]), [0, 1, 3, 2, 4]); // [B, nc, G, Q, N]
    const aCum = tf.cumsum(aC, 3); // [B, Hm, nc, Q]

    // 1. Intra-chunk (diagonal blocks).
    // Both [s, l] matrices; the matmul transposes them back.
    const LT = tf.transpose(tf.reshape(segmentSumExpT(aC, Q), [batch, G, hpg, nc, Q, Q]), [0, 3, 1, 2, 4, 5]); // [B, nc, G, hpg, Q(s), Q(l)]
    const bcT = tf.expandDims(tf.matMul(bC, cC, false, true), 3); // [B, nc, G, 1, Q(s), Q(l)] = B_s·C_l
    const yDiag = tf.matMul(tf.mul(LT, bcT), xdC, true, false); // [B, nc, G, hpg, Q(l), P]

    // 2. Chunk-local end states, as if each chunk started from zero.
    const aLast = tf.slice(aCum, [0, 0, 0, Q - 1], [-1, -1, -1, 1]); // [B, Hm, nc, 1]
    const decayToEnd = tf.transpose(tf.reshape(tf.exp(tf.sub(aLast, aCum)), [batch, G, hpg, nc, Q]), [0, 3, 1, 2, 4]); // [B, nc, G, hpg, Q]
    const xdDecayed = tf.mul(xdC, tf.expandDims(decayToEnd, -1)); // [B, nc, G, hpg, Q, P]
    const xdT = tf.reshape(tf.transpose(xdDecayed, [0, 1, 2, 3, 5, 4]), [batch, nc, G, hpg * P, Q]);
    const sLocal = tf.reshape(tf.matMul(xdT, bC), [batch, nc, Hm, P, N]); // [B, nc, Hm, P, N]

    // 3. Inter-chunk recurrence (nc is small: sequential is fine).
    const chunkDecay = tf.exp(tf.transpose(tf.reshape(aLast, [batch, Hm, nc]), [0, 2, 1])); // [B, nc, Hm]
    let state = initialState ?? tf.zeros([batch, Hm, P, N]); // [B, Hm, P, N]
    const statesIn: tf.Tensor[] = [];
    for (let c = 0; c < nc; c++) {
      statesIn.push(state);
      const decay = tf.reshape(tf.slice(chunkDecay, [0, c, 0], [-1, 1, -1]), [batch, Hm, 1, 1]);
      const local = tf.reshape(tf.slice(sLocal, [0, c, 0, 0, 0], [-1, 1, -1, -1, -1]), [batch, Hm, P, N]);
      state = tf.add(tf.mul(decay, state), local);
    }
    const sIn = tf.reshape(tf.stack(statesIn, 1), [batch, nc, G, hpg * P, N]); // [B, nc, G, hpg·P, N]

    // 4. State → output (off-diagonal blocks).
    const cs = tf.reshape(tf.matMul(cC, sIn, false, true), [batch, nc, G, Q, hpg, P]); // [B, nc, G, Q, hpg, P]
    const decayIn = tf.transpose(tf.reshape(tf.exp(aCum), [batch, G, hpg, nc, Q]), [0, 3, 1, 4, 2]); // [B, nc, G, Q, hpg]
    const yOff = tf.mul(cs, tf.expandDims(decayIn, -1)); // [B, nc, G, Q, hpg, P]

    const yChunks = tf.add(tf.transpose(yDiag, [0, 1, 4, 2, 3, 5]), tf.transpose(yOff, [0, 1, 3, 2, 4, 5])); // [B, nc, Q, G, hpg, P]
    let y = tf.reshape(yChunks, [batch, nc * Q, Hm, P]);
    if (pad) y = tf.slice(y, [0, 0, 0, 0], [-1, T, -1, -1]);
    y = tf.add(y, tf.mul(x, tf.reshape(D, [Hm, 1]))); // D uses the unpadded, undiscretised x (P6, P13)
    return [y, state];
  });
}
