import * as tf from '@tensorflow/tfjs-core';
import { Attention } from './attention_kernel';

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Multiplies q·k before the softmax (default 1 / sqrt(headDim)). */
  scale?: number;
  /** Query t of the last T positions sees keys s ≤ keyLength − T + t only (default true). */
  causal?: boolean;
  /** Filled positions of k and v (default all of them: k.shape[1]). */
  keyLength?: number;
  /** \[B, keyLength]: 0 where a key is padding, which no query attends. */
  keyMask?: tf.Tensor | null;
  /**
   * k and v are [B, Hkv, capacity, hd]: each KV head's positions contiguous, the layout a KV
   * cache should keep (a decode step then streams each head from memory at full speed).
   */
  headsMajor?: boolean;
}

/**
 * Softmax attention with grouped-query heads and a key / value cache, without materialising the
 * [T, keyLength] score matrix: q [B, T, Hq, hd], k and v [B, capacity, Hkv, hd] (or, with
 * `headsMajor`, [B, Hkv, capacity, hd]; Hkv divides Hq;
 * query head j reads KV head floor(j / (Hq / Hkv)), K and V are never repeated) → [B, T, Hq, hd].
 * A query that may attend no key (all padding) gets zeros. Differentiable in q, k and v.
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  const fail = (what: string) => {
    throw new RangeError(`attention: ${what}`);
  };
  for (const [name, t] of [
    ['q', q],
    ['k', k],
    ['v', v],
  ] as const) {
    if (t.rank !== 4) fail(`${name} must be [batch, positions, heads, headDim], got [${t.shape}].`);
    if (t.dtype !== 'float32') throw new TypeError(`attention: ${name} must be float32, got ${t.dtype}.`);
  }
  const [batch, time, heads, hd] = q.shape;
  const headsMajor = options.headsMajor ?? false;
  const [kBatch, kAxis1, kAxis2, kHd] = k.shape as [number, number, number, number];
  const [capacity, kvHeads] = headsMajor ? [kAxis2, kAxis1] : [kAxis1, kAxis2];
  if (!tf.util.arraysEqual(k.shape, v.shape)) fail(`k [${k.shape}] and v [${v.shape}] must have the same shape.`);
  if (kBatch !== batch || kHd !== hd) {
    fail(`k [${k.shape}] must be [${batch}, ${headsMajor ? 'kvHeads, positions' : 'positions, kvHeads'}, ${hd}] to match q [${q.shape}].`);
  }
  if (kvHeads === 0 || heads % kvHeads !== 0) fail(`the KV heads (${kvHeads}) must divide the query heads (${heads}).`);
  const keyLength = options.keyLength ?? capacity;
  if (!Number.isInteger(keyLength) || keyLength < 0 || keyLength > capacity) {
    fail(`keyLength must be an integer in [0, ${capacity}] (the positions of k), got ${keyLength}.`);
  }
  const causal = options.causal ?? true;
  if (causal && keyLength < time) fail(`causal attention needs keyLength ≥ the ${time} queries, got ${keyLength}.`);
  const scale = options.scale ?? 1 / Math.sqrt(hd);
  if (!Number.isFinite(scale)) fail(`scale must be a finite number, got ${scale}.`);
  const keyMask = options.keyMask ?? undefined;
  if (keyMask && (keyMask.rank !== 2 || keyMask.shape[0] !== batch || keyMask.shape[1] !== keyLength)) {
    fail(`keyMask must be [${batch}, ${keyLength}] (batch, keyLength), got [${keyMask.shape}].`);
  }
  const mask = keyMask && keyMask.dtype !== 'float32' ? tf.cast(keyMask, 'float32') : keyMask;
  try {
    return Attention.run({ q, k, v, keyMask: mask }, { scale, keyLength, causal, headsMajor })[0];
  } finally {
    if (mask !== keyMask) mask?.dispose();
  }
}
