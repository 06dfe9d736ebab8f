import type { Format } from '../src';
import { rng } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

interface Problem {
  f1: Format;
  f2: Format;
  w1: Uint8Array;
  w2: Uint8Array;
  x: Float32Array;
  dims: { n: number; h: number; inter: number; experts: number; k: number };
  indices: Int32Array;
  weights: Float32Array;
}

/** Packed by the addon's quantizer (bit-exact with the reference one, quantize.test.ts; far faster at H-Tiny widths). */
function quantize(format: Format, values: Float32Array, cols: number): Uint8Array {
  const out = new Uint8Array(native.packedByteLength(format, values.length / cols, cols));
  native.quantize(format, values, values.length / cols, cols, out);
  return out;
}

/** Uniform in (-scale, scale): magnitudes that stay within f16 block scales through both projections. */
function uniform(n: number, seed: number, scale = 1): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

function problem(f1: Format, f2: Format, n: number, h: number, inter: number, experts: number, k: number, seed: number): Problem {
  const next = rng(seed);
  const indices = new Int32Array(n * k);
  // Distinct experts per token (as top-k routing gives), except the last token, which repeats one.
  for (let t = 0; t < n; t++) {
    const picked = new Set<number>();
    for (let j = 0; j < k; j++) {
      let e = Math.floor(next() * experts);
      while (picked.has(e) && picked.size < experts && !(t === n - 1 && j === k - 1)) e = Math.floor(next() * experts);
      picked.add(e);
      indices[t * k + j] = e;
    }
  }
  if (n > 1 && k > 1) indices[n * k - 1] = indices[n * k - 2];
  return {
    f1,
    f2,
    w1: quantize(f1, uniform(experts * 2 * inter * h, seed + 1, 0.2), h),
    w2: quantize(f2, uniform(experts * h * inter, seed + 2, 0.2), inter),
    x: uniform(n * h, seed + 3, 2),
    dims: { n, h, inter, experts, k },
    indices,
    weights: Float32Array.from({ length: n * k }, () => next()),
  };
}

/**
 * The same computation from the addon's own matmul and swiglu, expert by expert, summed in the
 * order the kernel documents (one token: slot order; more: expert order, tokens in order).
 */
function composed(p: Problem): Float32Array {
  const { n, h, inter, k } = p.dims;
  const w1Bytes = 2 * inter * native.rowBytes(p.f1, h),
    w2Bytes = h * native.rowBytes(p.f2, inter);
  const y = new Float32Array(n * h);
  const slots = [...Array(n * k).keys()];
  if (n > 1) slots.sort((a, b) => p.indices[a] - p.indices[b] || a - b);
  // Group consecutive slots of one expert, as the kernel multiplies them together.
  for (let s = 0; s < slots.length; ) {
    const e = p.indices[slots[s]];
    let end = s;
    while (end < slots.length && (n > 1 ? p.indices[slots[end]] === e : end === s)) end++;
    const group = slots.slice(s, end),
      c = group.length;
    const xs = new Float32Array(c * h);
    group.forEach((slot, t) => xs.set(p.x.subarray(Math.floor(slot / k) * h, (Math.floor(slot / k) + 1) * h), t * h));
    const a = new Float32Array(c * 2 * inter),
      act = new Float32Array(c * inter),
      ys = new Float32Array(c * h);
    native.matmul(p.f1, p.w1.subarray(e * w1Bytes, (e + 1) * w1Bytes), 2 * inter, h, xs, c, a);
    native.swiglu(a, c, inter, act);
    native.matmul(p.f2, p.w2.subarray(e * w2Bytes, (e + 1) * w2Bytes), h, inter, act, c, ys);
    group.forEach((slot, t) => {
      const dst = Math.floor(slot / k) * h;
      for (let col = 0; col < h; col++) y[dst + col] = Math.fround(y[dst + col] + Math.fround(p.weights[slot] * ys[t * h + col]));
    });
    s = end;
  }
  return y;
}

function run(p: Problem, y: Float32Array): void {
  native.moeExperts(p.f1, p.w1, p.f2, p.w2, p.x, p.dims, p.indices, p.weights, y);
}

describe.each(availableLevels)('moeExperts at %s', (level) => {
  test.each([
    ['q4_0', 'q4_0', 1, 6],
    ['q8_0', 'q4_0', 1, 3],
    ['q4_0', 'q8_0', 5, 3],
    ['q8_0', 'q8_0', 7, 2],
  ] as Array<[Format, Format, number, number]>)(
    '%s / %s, %i token(s), top-%i: equals matmul + swiglu per expert bit for bit',
    (f1, f2, n, k) => {
      const p = problem(f1, f2, n, 96, 64, 8, k, n * 31 + k);
      const want = atLevel(level, () => composed(p));
      const y = new Float32Array(n * p.dims.h).fill(7); // overwritten, not added to
      const before = calls('moeExperts', level);
      atLevel(level, () => run(p, y));
      expect(calls('moeExperts', level)).toBe(before + 1);
      expect(y.every(Number.isFinite) && y.some((v) => Math.abs(v) > 1e-3)).toBe(true);
      expect(Buffer.from(y.buffer).equals(Buffer.from(want.buffer))).toBe(true);
    },
  );
});

test('one token at H-Tiny widths on 1 and 2 threads gives the same bits', () => {
  const p = problem('q4_0', 'q4_0', 1, 1536, 512, 8, 6, 5);
  const one = new Float32Array(1536),
    two = new Float32Array(1536);
  atLevel(native.level(), () => run(p, one), 1);
  atLevel(native.level(), () => run(p, two), 2);
  expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
  expect(Buffer.from(one.buffer).equals(Buffer.from(atLevel(native.level(), () => composed(p)).buffer))).toBe(true);
});

test('bad arguments are refused by name', () => {
  const p = problem('q4_0', 'q4_0', 2, 32, 32, 4, 2, 9);
  const y = new Float32Array(64);
  expect(() => native.moeExperts('bf16', p.w1, 'q4_0', p.w2, p.x, p.dims, p.indices, p.weights, y)).toThrow(
    /moeExperts: inputFormat must be q8_0 or q4_0, got bf16/,
  );
  const stray = p.indices.slice();
  stray[3] = 4;
  expect(() => native.moeExperts('q4_0', p.w1, 'q4_0', p.w2, p.x, p.dims, stray, p.weights, y)).toThrow(
    /moeExperts: indices\[1, 1\] = 4 is outside the 4 experts/,
  );
  expect(() => native.moeExperts('q4_0', p.w1.subarray(1), 'q4_0', p.w2, p.x, p.dims, p.indices, p.weights, y)).toThrow(
    /moeExperts: inputLinear/,
  );
  expect(() => native.moeExperts('q4_0', p.w1, 'q4_0', p.w2, p.x, p.dims, p.indices, p.weights, new Float32Array(3))).toThrow(
    /moeExperts: y must/,
  );
});
