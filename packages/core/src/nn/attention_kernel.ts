import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '../kernels/define_kernel';
import type { FlatArray } from '../kernels/fused_kernel';
import { nativeAddon } from '../native/native_addon';
import { nativeKernel } from '../native/native_backend';
import { attentionSimd } from './attention_simd';

/**
 * Inputs of the `Attention` kernel: queries q [B, T, Hq, hd]; keys and values k, v
 * [B, capacity, Hkv, hd], or [B, Hkv, capacity, hd] with `headsMajor` (a cache whose first
 * `keyLength` positions are filled); optionally keyMask [B, keyLength], 0 for keys no query may
 * attend (padding).
 */
export type AttentionInputs = { q: tf.Tensor; k: tf.Tensor; v: tf.Tensor; keyMask?: tf.Tensor };
/**
 * Attributes of the `Attention` kernel: the score scale, the filled key positions, and whether
 * query t (of the last T positions) sees only keys s ≤ keyLength − T + t.
 */
export type AttentionAttrs = { scale: number; keyLength: number; causal: boolean; headsMajor: boolean };

/** The kernel's inputs and output as a fused body sees them (flat arrays, in place on wasm). */
export interface AttentionArrays {
  q: FlatArray;
  k: FlatArray;
  v: FlatArray;
  keyMask?: FlatArray;
  out: FlatArray;
}

/** Added to the scores of keys a query may not attend: exp() of it is exactly 0 in float32. */
const MASKED = -1e9;

/**
 * The composed definition: the whole [T, keyLength] score matrix of every head, softmax, values.
 * Query head j reads KV head floor(j / rep), rep = Hq / Hkv; a query with no allowed key gets zeros.
 */
export function attentionReference(inputs: AttentionInputs, attrs: AttentionAttrs): tf.Tensor {
  return tf.tidy(() => {
    const { q, k, v, keyMask } = inputs;
    const { scale, keyLength: span, causal, headsMajor } = attrs;
    const [batch, time, heads, hd] = q.shape as [number, number, number, number];
    const kvHeads = k.shape[headsMajor ? 1 : 2] as number;
    const rep = heads / kvHeads;
    const filled = (t: tf.Tensor) =>
      headsMajor
        ? tf.slice(t, [0, 0, 0, 0], [batch, kvHeads, span, hd])
        : tf.transpose(tf.slice(t, [0, 0, 0, 0], [batch, span, kvHeads, hd]), [0, 2, 1, 3]);
    const keys = filled(k); // [B, Hkv, S, hd]
    const values = filled(v);
    // Heads j = kv·rep + r share KV head kv: queries regroup as [B, Hkv, rep·T, hd].
    const queries = tf.reshape(tf.transpose(tf.reshape(q, [batch, time, kvHeads, rep, hd]), [0, 2, 3, 1, 4]), [
      batch,
      kvHeads,
      rep * time,
      hd,
    ]);
    const scores = tf.reshape(tf.mul(tf.matMul(queries, keys, false, true), scale), [batch, kvHeads, rep, time, span]);
    let allowed: tf.Tensor = tf.ones([1, time, span], 'bool');
    if (causal) {
      const last = tf.add(tf.range(0, time, 1, 'int32'), span - time); // the last key each query sees
      allowed = tf.reshape(tf.lessEqual(tf.reshape(tf.range(0, span, 1, 'int32'), [1, span]), tf.reshape(last, [time, 1])), [
        1,
        time,
        span,
      ]);
    }
    if (keyMask) allowed = tf.logicalAnd(allowed, tf.reshape(tf.notEqual(keyMask, 0), [batch, 1, span]));
    const allowed5 = tf.reshape(allowed, [allowed.shape[0], 1, 1, time, span]);
    const additive = tf.where(allowed5, tf.zeros(allowed5.shape), tf.fill(allowed5.shape, MASKED));
    const seesAny = tf.cast(tf.any(allowed5, -1, true), 'float32'); // 0 for queries with no key
    const probs = tf.mul(tf.softmax(tf.add(scores, additive)), seesAny);
    const out = tf.matMul(tf.reshape(probs, [batch, kvHeads, rep * time, span]), values); // [B, Hkv, rep·T, hd]
    return tf.reshape(tf.transpose(tf.reshape(out, [batch, kvHeads, rep, time, hd]), [0, 3, 1, 2, 4]), [batch, time, heads, hd]);
  });
}

/**
 * Query rows one at a time against every allowed key with an online softmax: the running maximum
 * m, the running sum l of exp(score − m) and the running output, rescaled by exp(m_old − m_new)
 * when a key raises the maximum. Memory: one output row per query, never a score matrix.
 */
function attentionRows(
  { q, k, v, keyMask, out }: AttentionArrays,
  [batch, time, heads, hd]: number[],
  kShape: number[],
  { scale, keyLength: span, causal, headsMajor }: AttentionAttrs,
): void {
  const [capacity, kvHeads] = headsMajor ? [kShape[2], kShape[1]] : [kShape[1], kShape[2]];
  const rep = heads / kvHeads;
  const posStride = headsMajor ? hd : kvHeads * hd;
  const headStride = headsMajor ? capacity * hd : hd;
  const acc = new Float64Array(hd);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < time; t++) {
      const end = causal ? span - time + t + 1 : span;
      for (let j = 0; j < heads; j++) {
        const qo = ((b * time + t) * heads + j) * hd;
        const kvo = b * capacity * kvHeads * hd + Math.floor(j / rep) * headStride;
        let m = -Infinity,
          l = 0;
        acc.fill(0);
        for (let s = 0; s < end; s++) {
          if (keyMask !== undefined && keyMask[b * span + s] === 0) continue;
          const ko = kvo + s * posStride;
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[qo + d] * k[ko + d];
          const score = Math.fround(dot) * scale;
          if (score > m) {
            const alpha = Math.exp(m - score); // 0 for the first key: m is −∞
            l *= alpha;
            for (let d = 0; d < hd; d++) acc[d] *= alpha;
            m = score;
          }
          const p = Math.exp(score - m);
          l += p;
          for (let d = 0; d < hd; d++) acc[d] += p * v[ko + d];
        }
        const inv = l > 0 ? 1 / l : 0;
        for (let d = 0; d < hd; d++) out[qo + d] = acc[d] * inv;
      }
    }
}

const nativeAttention = nativeKernel<AttentionAttrs>((addon, a, { scale, keyLength, causal, headsMajor }) => {
  const [batch, time, heads, hd] = a.q.shape;
  const [capacity, kvHeads] = headsMajor ? [a.k.shape[2], a.k.shape[1]] : [a.k.shape[1], a.k.shape[2]];
  const out = new Float32Array(a.q.values.length);
  const f32 = (x: { values: Float32Array | Int32Array }) => x.values as Float32Array;
  addon.attention!(
    f32(a.q),
    f32(a.k),
    f32(a.v),
    a.keyMask ? f32(a.keyMask) : null,
    { batch, queryLength: time, queryHeads: heads, kvHeads, headDim: hd, keyLength, capacity },
    { scale, causal, headsMajor },
    out,
  );
  return { shape: a.q.shape, values: out };
});

/**
 * Softmax attention without the [T, keyLength] score matrix (flash-attention style): on wasm a
 * WebAssembly SIMD online softmax over groups of 4 keys (`assembly/attention.ts`), on cpu (and
 * wasm without SIMD, or head dims not a multiple of 4) the same in JavaScript one key at a time,
 * on native `@graniteflow/native`'s tiled SIMD kernel on every core. The gradient is the composed reference's (it does build the matrix: for
 * training lengths, not for 128K-token prompts).
 */
export const Attention = defineKernel<AttentionInputs, AttentionAttrs>({
  name: 'GraniteflowAttention',
  inputNames: ['q', 'k', 'v', 'keyMask'],
  reference: (inputs, attrs) => [attentionReference(inputs, attrs)],
  fused: {
    outputs: ({ q }) => [{ shape: q.shape, dtype: 'float32' }],
    compute: ({ q, k, v, keyMask }, [out], shapes, attrs) => {
      const arrays = { q, k, v, keyMask, out };
      if (!attentionSimd(arrays, shapes.q, shapes.k, attrs)) attentionRows(arrays, shapes.q, shapes.k, attrs);
    },
  },
  backendKernels: {
    // Builds of @graniteflow/native before attention existed keep the JavaScript body.
    native: () => (nativeAddon()?.attention ? nativeAttention() : null),
  },
  gradient: 'reference',
  nonDifferentiable: ['keyMask'],
});
