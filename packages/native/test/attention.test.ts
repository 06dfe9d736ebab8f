import type { AttentionDims } from '../src';
import { rng } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

interface Case extends AttentionDims {
  causal: boolean;
  /** k, v [batch, kvHeads, capacity, headDim] instead of [batch, capacity, kvHeads, headDim]. */
  headsMajor?: boolean;
  /** Padding: keys with mask 0 (null: no mask). */
  masked: number[] | null;
}

/** Index of element 0 of position s of KV head h of sequence b, in the case's layout. */
function kvIndex(c: Case, b: number, s: number, h: number): number {
  return c.headsMajor ? ((b * c.kvHeads + h) * c.capacity + s) * c.headDim : ((b * c.capacity + s) * c.kvHeads + h) * c.headDim;
}

/** Softmax attention in float64 with the whole score row: the oracle. */
function attentionReference(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  mask: Float32Array | null,
  c: Case,
  scale: number,
): Float64Array {
  const { batch, queryLength: T, queryHeads: Hq, kvHeads: Hkv, headDim: hd, keyLength: S } = c;
  const rep = Hq / Hkv;
  const out = new Float64Array(batch * T * Hq * hd);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < T; t++)
      for (let j = 0; j < Hq; j++) {
        const kvh = Math.floor(j / rep);
        const qo = ((b * T + t) * Hq + j) * hd;
        const scores: Array<[number, number]> = [];
        for (let s = 0; s < S; s++) {
          if (mask && mask[b * S + s] === 0) continue;
          if (c.causal && s > S - T + t) continue;
          const ko = kvIndex(c, b, s, kvh);
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[qo + d] * k[ko + d];
          scores.push([s, dot * scale]);
        }
        if (scores.length === 0) continue;
        const max = Math.max(...scores.map(([, x]) => x));
        let total = 0;
        for (const [, x] of scores) total += Math.exp(x - max);
        for (const [s, x] of scores) {
          const p = Math.exp(x - max) / total;
          const vo = kvIndex(c, b, s, kvh);
          for (let d = 0; d < hd; d++) out[qo + d] += p * v[vo + d];
        }
      }
  return out;
}

const dims = (batch: number, T: number, Hq: number, Hkv: number, hd: number, S: number, capacity = S): AttentionDims => ({
  batch,
  queryLength: T,
  queryHeads: Hq,
  kvHeads: Hkv,
  headDim: hd,
  keyLength: S,
  capacity,
});

/* Decode (one query) and prefill chunks against a cache with room to spare; head dims around the
 * 16-lane steps (8, 24, 64, 100); GQA groups of 1, 3 and 4; key lengths inside one tile and
 * ragged across many; left padding (masked keys, including queries that see no key at all). */
const CASES: Case[] = [
  { ...dims(1, 1, 4, 1, 8, 1), causal: true, masked: null },
  { ...dims(1, 1, 32, 8, 64, 300, 512), causal: true, masked: null },
  { ...dims(2, 5, 6, 2, 24, 37, 40), causal: true, masked: null },
  { ...dims(1, 19, 3, 3, 100, 19), causal: true, masked: null },
  {
    ...dims(2, 17, 8, 2, 64, 50, 64),
    causal: true,
    masked: [
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
      36, 37,
    ],
  },
  { ...dims(2, 3, 4, 4, 16, 33), causal: false, masked: [0, 16, 32] },
  { ...dims(1, 40, 12, 4, 64, 40), causal: true, masked: [0, 1, 2] },
  { ...dims(1, 2, 2, 1, 8, 0, 4), causal: false, masked: null },
  // The same shapes with each KV head's positions contiguous.
  { ...dims(1, 1, 32, 8, 64, 300, 512), causal: true, masked: null, headsMajor: true },
  { ...dims(2, 5, 6, 2, 24, 37, 40), causal: true, masked: null, headsMajor: true },
  {
    ...dims(2, 17, 8, 2, 64, 50, 64),
    causal: true,
    masked: [
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
      36, 37,
    ],
    headsMajor: true,
  },
  { ...dims(2, 3, 4, 4, 16, 33), causal: false, masked: [0, 16, 32], headsMajor: true },
];

/** Largest |got − want| / (atol + rtol·|want|); ≤ 1 passes. */
function worst(got: Float32Array, want: Float64Array, atol: number, rtol: number): number {
  let w = 0;
  for (let i = 0; i < got.length; i++) w = Math.max(w, Math.abs(got[i] - want[i]) / (atol + rtol * Math.abs(want[i])));
  return Number.isNaN(w) ? Infinity : w;
}

function inputs(c: Case, seed: number) {
  const nq = c.batch * c.queryLength * c.queryHeads * c.headDim;
  const nkv = c.batch * c.capacity * c.kvHeads * c.headDim;
  const next = rng(seed);
  const uniform = (n: number, half: number) => Float32Array.from({ length: n }, () => (next() * 2 - 1) * half);
  // Scores of a few units (|q·k|·SCALE ≲ 2): softmax rows that are neither flat nor one-hot.
  const q = uniform(nq, 2),
    k = uniform(nkv, 2),
    v = uniform(nkv, 1);
  // Positions past keyLength hold NaN: the kernel must never read them.
  for (let b = 0; b < c.batch; b++)
    for (let h = 0; h < c.kvHeads; h++)
      for (let s = c.keyLength; s < c.capacity; s++) k.fill(NaN, kvIndex(c, b, s, h), kvIndex(c, b, s, h) + c.headDim);
  let mask: Float32Array | null = null;
  if (c.masked) {
    mask = new Float32Array(c.batch * c.keyLength).fill(1);
    for (const s of c.masked) if (s < c.keyLength) mask[(c.batch - 1) * c.keyLength + s] = 0; // the last sequence is left-padded
  }
  return { q, k, v, mask };
}

const SCALE = 0.125;

describe.each(availableLevels)('attention at %s', (level) => {
  test('equals softmax attention in float64 on ragged shapes, with 1 and 2 threads', () => {
    const before = calls('attention', level);
    for (const threads of [1, 2])
      CASES.forEach((c, n) => {
        const { q, k, v, mask } = inputs(c, 100 + n);
        const out = new Float32Array(q.length).fill(12345);
        atLevel(
          level,
          () => native.attention(q, k, v, mask, c, { scale: SCALE, causal: c.causal, headsMajor: c.headsMajor }, out),
          threads,
        );
        // Case index beside the verdict, so a failure names its shape.
        expect([n, worst(out, attentionReference(q, k, v, mask, c, SCALE), 1e-6, 1e-5) <= 1]).toEqual([n, true]);
      });
    expect(calls('attention', level)).toBe(before + 2 * CASES.length);
    expect(atLevel(level, () => native.kernelLevel('attention'))).toBe(level);
  });

  test('a query that sees no key gets zeros', () => {
    const c: Case = { ...dims(1, 2, 2, 1, 24, 4), causal: true, masked: [0, 1, 2] };
    const { q, k, v, mask } = inputs(c, 7);
    const out = new Float32Array(q.length).fill(5);
    atLevel(level, () => native.attention(q, k, v, mask, c, { scale: 1, causal: true }, out));
    // Query 0 sees keys 0..2, all padding; query 1 sees key 3.
    expect(Array.from(out.subarray(0, 2 * 24))).toEqual(new Array(48).fill(0));
    expect(Array.from(out.subarray(2 * 24, 2 * 24 + 24))).toEqual(Array.from(v.subarray(3 * 24, 4 * 24)));
  });
});

test.each(availableLevels.filter((l) => l !== 'scalar'))('the %s body agrees with the scalar oracle on a long cache', (level) => {
  for (const c of [
    { ...dims(1, 16, 8, 2, 64, 4099, 4100), causal: true, masked: null },
    { ...dims(1, 1, 8, 2, 64, 4099, 4100), causal: true, masked: null, headsMajor: true },
  ] as Case[]) {
    const { q, k, v } = inputs(c, 3);
    const scalar = new Float32Array(q.length),
      simd = new Float32Array(q.length);
    const options = { scale: SCALE, causal: true, headsMajor: c.headsMajor };
    atLevel('scalar', () => native.attention(q, k, v, null, c, options, scalar));
    atLevel(level, () => native.attention(q, k, v, null, c, options, simd));
    let diff = 0;
    for (let i = 0; i < q.length; i++) diff = Math.max(diff, Math.abs(scalar[i] - simd[i]));
    expect(diff).toBeLessThan(1e-5);
  }
});

test('bad arguments are refused with the argument named', () => {
  const c = dims(1, 2, 4, 2, 8, 3, 4);
  const q = new Float32Array(2 * 4 * 8),
    kv = new Float32Array(4 * 2 * 8),
    out = new Float32Array(q.length);
  const run =
    (d: AttentionDims, o: { scale: number; causal: boolean }, mask: Float32Array | null = null, k = kv, dst = out) =>
    () =>
      native.attention(q, k, kv, mask, d, o, dst);
  expect(run({ ...c, kvHeads: 3 }, { scale: 1, causal: false })).toThrow(/kvHeads must be positive and divide dims.queryHeads = 4, got 3/);
  expect(run({ ...c, keyLength: 5 }, { scale: 1, causal: false })).toThrow(/keyLength \(5\) must be at most dims.capacity \(4\)/);
  expect(run({ ...c, keyLength: 1 }, { scale: 1, causal: true })).toThrow(/keyLength >= dims.queryLength, got 1 < 2/);
  expect(run(c, { scale: 1, causal: false }, new Float32Array(2))).toThrow(/keyMask must hold batch \* keyLength = 1 \* 3/);
  expect(run(c, { scale: 1, causal: false }, null, new Float32Array(3))).toThrow(/attention: k must hold/);
  expect(run(c, { scale: NaN, causal: false })).toThrow(/scale/);
  expect(run(c, { scale: 1, causal: false }, null, kv, q)).toThrow(/out/);
  expect(run(c, { scale: 1, causal: false, headsMajor: 1 } as never)).toThrow(/options.headsMajor must be a boolean/);
});
