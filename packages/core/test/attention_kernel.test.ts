import * as tf from '@tensorflow/tfjs-core';
import { Attention, attention, attentionReference } from '../src';
import { isSimdEnabled, simdCounters } from '../src';
import { describeBackends, expectClose, expectNoTensorLeak, randomFloats, watchFastPath } from '../src/testing';

interface Case {
  batch: number;
  time: number;
  heads: number;
  kvHeads: number;
  hd: number;
  keyLength: number;
  capacity: number;
  causal: boolean;
  /** Leading keys of the last sequence that are padding (mask 0). */
  padding: number;
  /** k and v passed as [B, Hkv, capacity, hd]. */
  headsMajor?: boolean;
}

/** float64 softmax attention over whole score rows, independent of both implementations. */
function naive(q: Float32Array, k: Float32Array, v: Float32Array, c: Case, scale: number): Float64Array {
  const { batch, time, heads, kvHeads, hd, keyLength: S, capacity } = c;
  const out = new Float64Array(batch * time * heads * hd);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < time; t++)
      for (let j = 0; j < heads; j++) {
        const kvh = Math.floor(j / (heads / kvHeads));
        const qo = ((b * time + t) * heads + j) * hd;
        const seen: Array<[number, number]> = [];
        for (let s = 0; s < S; s++) {
          if (b === batch - 1 && s < c.padding) continue;
          if (c.causal && s > S - time + t) continue;
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[qo + d] * k[((b * capacity + s) * kvHeads + kvh) * hd + d];
          seen.push([s, dot * scale]);
        }
        if (seen.length === 0) continue;
        const max = Math.max(...seen.map(([, x]) => x));
        const total = seen.reduce((acc, [, x]) => acc + Math.exp(x - max), 0);
        for (const [s, x] of seen)
          for (let d = 0; d < hd; d++) out[qo + d] += (Math.exp(x - max) / total) * v[((b * capacity + s) * kvHeads + kvh) * hd + d];
      }
  return out;
}

/* A decode step of H-Micro's widths against a cache with spare room, a prefill chunk after cached
 * keys, a whole causal prompt, GQA groups of 1 and 3, left padding with queries that see no key,
 * non-causal attention, and head dims off the 16-lane steps. */
const CASES: Case[] = [
  { batch: 1, time: 1, heads: 32, kvHeads: 8, hd: 64, keyLength: 70, capacity: 128, causal: true, padding: 0 },
  { batch: 2, time: 7, heads: 6, kvHeads: 2, hd: 24, keyLength: 40, capacity: 48, causal: true, padding: 0 },
  { batch: 1, time: 20, heads: 3, kvHeads: 3, hd: 8, keyLength: 20, capacity: 20, causal: true, padding: 0 },
  { batch: 2, time: 18, heads: 4, kvHeads: 2, hd: 16, keyLength: 18, capacity: 32, causal: true, padding: 5 },
  { batch: 2, time: 3, heads: 4, kvHeads: 1, hd: 20, keyLength: 33, capacity: 33, causal: false, padding: 17 },
  { batch: 1, time: 1, heads: 32, kvHeads: 8, hd: 64, keyLength: 70, capacity: 128, causal: true, padding: 0, headsMajor: true },
  { batch: 1, time: 3, heads: 2, kvHeads: 1, hd: 6, keyLength: 5, capacity: 5, causal: true, padding: 0 }, // no SIMD: hd % 4
  { batch: 2, time: 18, heads: 4, kvHeads: 2, hd: 16, keyLength: 18, capacity: 32, causal: true, padding: 5, headsMajor: true },
];

function tensorsOf(c: Case, seed: number) {
  const qs = randomFloats(c.batch * c.time * c.heads * c.hd, seed, 2);
  const ks = randomFloats(c.batch * c.capacity * c.kvHeads * c.hd, seed + 1, 2);
  const vs = randomFloats(c.batch * c.capacity * c.kvHeads * c.hd, seed + 2, 1);
  const mask = new Float32Array(c.batch * c.keyLength).fill(1);
  mask.fill(0, (c.batch - 1) * c.keyLength, (c.batch - 1) * c.keyLength + c.padding);
  const layout = (t: tf.Tensor) => (c.headsMajor ? tf.tidy(() => tf.transpose(t, [0, 2, 1, 3])) : t);
  const kvTensor = (x: Float32Array) => {
    const positionsMajor = tf.tensor(x, [c.batch, c.capacity, c.kvHeads, c.hd]);
    const out = layout(positionsMajor);
    if (out !== positionsMajor) positionsMajor.dispose();
    return out;
  };
  return {
    qs,
    ks,
    vs,
    q: tf.tensor(qs, [c.batch, c.time, c.heads, c.hd]),
    k: kvTensor(ks),
    v: kvTensor(vs),
    keyMask: c.padding > 0 ? tf.tensor2d(mask, [c.batch, c.keyLength]) : null,
  };
}

const SCALE = 0.3;

describeBackends('attention (fused kernel)', (backend) => {
  CASES.forEach((c, n) => {
    it(`runs the fast path and equals float64 attention and the composed reference: case ${n}`, () => {
      const { qs, ks, vs, q, k, v, keyMask } = tensorsOf(c, 10 + 3 * n);
      const watch = watchFastPath(backend, Attention, 'attention');
      const simdBefore = simdCounters().Attention ?? 0;
      try {
        const y = attention(q, k, v, { scale: SCALE, causal: c.causal, keyLength: c.keyLength, keyMask, headsMajor: c.headsMajor });
        expect(watch.calls()).toBe(1);
        // On wasm the SIMD module ran (head dims that are multiples of 4), not the JavaScript rows.
        const simdRan = backend === 'wasm' && isSimdEnabled() && c.hd % 4 === 0 ? 1 : 0;
        expect((simdCounters().Attention ?? 0) - simdBefore).toBe(simdRan);
        expect(y.shape).toEqual(q.shape);
        expectClose(y, naive(qs, ks, vs, c, SCALE), { atol: 1e-5, rtol: 1e-4 }, 'fused vs float64');
        const r = attentionReference(
          { q, k, v, keyMask: keyMask ?? undefined },
          { scale: SCALE, keyLength: c.keyLength, causal: c.causal, headsMajor: c.headsMajor ?? false },
        );
        expectClose(y, r, { atol: 1e-5, rtol: 1e-4 }, 'fused vs composed');
        tf.dispose([y, r]);
      } finally {
        watch.restore();
        tf.dispose([q, k, v, ...(keyMask ? [keyMask] : [])]);
      }
    });
  });

  it('takes a key mask cast to float32 from int32 (a lossless cast keeps the Int32Array on cpu kernels)', () => {
    const c = CASES.find((x) => x.padding > 0)!;
    const { q, k, v, keyMask } = tensorsOf(c, 60);
    const cast = tf.cast(tf.cast(keyMask!, 'int32'), 'float32');
    try {
      const options = { scale: SCALE, causal: c.causal, keyLength: c.keyLength, headsMajor: c.headsMajor };
      expectClose(attention(q, k, v, { ...options, keyMask: cast }), attention(q, k, v, { ...options, keyMask }), { atol: 0, rtol: 0 });
    } finally {
      tf.dispose([q, k, v, keyMask!, cast]);
    }
  });

  it('differentiates like the composed reference (q, k and v, with a cache and padding)', () => {
    const c = CASES[7];
    const { q, k, v, keyMask } = tensorsOf(c, 40);
    const up = tf.tensor(randomFloats(q.size, 41, 1), q.shape);
    const attrs = { scale: SCALE, keyLength: c.keyLength, causal: true, headsMajor: true };
    const loss = (fused: boolean) => (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
      tf.sum(
        tf.mul(
          fused
            ? attention(a, b, d, { ...attrs, keyMask })
            : attentionReference({ q: a, k: b, v: d, keyMask: keyMask ?? undefined }, attrs),
          up,
        ),
      );
    const got = tf.grads(loss(true))([q, k, v]);
    const want = tf.grads(loss(false))([q, k, v]);
    ['dq', 'dk', 'dv'].forEach((name, i) => expectClose(got[i], want[i], { atol: 1e-5, rtol: 1e-4 }, name));
    expect(tf.sum(tf.abs(got[1])).arraySync()).toBeGreaterThan(0);
    tf.dispose([q, k, v, ...(keyMask ? [keyMask] : []), up, ...got, ...want]);
  });

  it('does not leak', async () => {
    const { q, k, v, keyMask } = tensorsOf(CASES[3], 50);
    await expectNoTensorLeak(() => attention(q, k, v, { keyLength: CASES[3].keyLength, keyMask }).dispose());
    tf.dispose([q, k, v, ...(keyMask ? [keyMask] : [])]);
  });

  it('names what is wrong with its arguments', () => {
    const q = tf.zeros([1, 2, 4, 8]);
    const kv = tf.zeros([1, 5, 2, 8]);
    expect(() => attention(tf.zeros([2, 4, 8]), kv, kv)).toThrow('attention: q must be [batch, positions, heads, headDim], got [2,4,8].');
    expect(() => attention(q, tf.zeros([1, 5, 3, 8]), tf.zeros([1, 5, 3, 8]))).toThrow(
      'attention: the KV heads (3) must divide the query heads (4).',
    );
    expect(() => attention(q, kv, tf.zeros([1, 4, 2, 8]))).toThrow('attention: k [1,5,2,8] and v [1,4,2,8] must have the same shape.');
    expect(() => attention(q, tf.zeros([1, 5, 2, 4]), tf.zeros([1, 5, 2, 4]))).toThrow(
      'attention: k [1,5,2,4] must be [1, positions, kvHeads, 8] to match q [1,2,4,8].',
    );
    expect(() => attention(q, kv, kv, { headsMajor: true })).toThrow('attention: the KV heads (5) must divide the query heads (4).');
    expect(() => attention(q, kv, kv, { keyLength: 6 })).toThrow(
      'attention: keyLength must be an integer in [0, 5] (the positions of k), got 6.',
    );
    expect(() => attention(q, kv, kv, { keyLength: 1 })).toThrow('attention: causal attention needs keyLength ≥ the 2 queries, got 1.');
    expect(() => attention(q, kv, kv, { keyLength: 3, keyMask: tf.ones([1, 5]) })).toThrow(
      'attention: keyMask must be [1, 3] (batch, keyLength), got [1,5].',
    );
    expect(() => attention(tf.zeros([1, 2, 4, 8], 'int32'), kv, kv)).toThrow('attention: q must be float32, got int32.');
    tf.dispose([q, kv]);
  });
});
