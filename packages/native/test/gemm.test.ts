import { EPS32, firstViolation, gemmReference, randomFloats } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

/* [M, N, K]: single rows (decode: no packing), edges of the 8x32 / 6x16 / 4x4 register tiles,
 * K across several 256-wide blocks, N across 512-wide blocks. */
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 300, 70],
  [3, 5, 7],
  [17, 40, 300],
  [64, 64, 64],
  [9, 33, 600],
  [130, 530, 40],
];

function check(M: number, N: number, K: number, ta: boolean, tb: boolean, level: (typeof availableLevels)[number]) {
  const a = randomFloats(M * K, M * 31 + K),
    b = randomFloats(K * N, N * 17 + K);
  const c = new Float32Array(M * N);
  atLevel(level, () => native.gemmF32(a, b, c, M, N, K, ta, tb));
  const ref = gemmReference(a, b, M, N, K, ta, tb);
  const bad = firstViolation(c, ref.value, ref.roundoff);
  if (bad) throw new Error(`${M}x${N}x${K} transposeA=${ta} transposeB=${tb}: ${bad}`);
}

describe.each(availableLevels)('gemmF32 at %s', (level) => {
  test.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('transposeA=%s transposeB=%s: equals the float64 reference within float32 summation error', (ta, tb) => {
    const before = calls('gemmF32', level);
    for (const [M, N, K] of SHAPES) check(M, N, K, ta, tb, level);
    expect(calls('gemmF32', level)).toBe(before + SHAPES.length);
    expect(atLevel(level, () => native.kernelLevel('gemmF32'))).toBe(level);
  });

  test('batched with strides, a broadcast operand (stride 0) and accumulate', () => {
    const M = 5,
      N = 37,
      K = 19,
      batch = 3;
    const a = randomFloats(batch * M * K, 1),
      b = randomFloats(K * N, 2); // one B for every problem
    const strideC = M * N + 3; // gaps between the outputs stay untouched
    const c0 = randomFloats(batch * strideC, 3),
      c = c0.slice();
    atLevel(level, () => native.gemmF32(a, b, c, M, N, K, false, false, { batch, strideA: M * K, strideB: 0, strideC, accumulate: true }));
    for (let p = 0; p < batch; p++) {
      const ref = gemmReference(a.subarray(p * M * K, (p + 1) * M * K), b, M, N, K, false, false);
      const got = c.subarray(p * strideC, p * strideC + M * N),
        base = c0.subarray(p * strideC, p * strideC + M * N);
      const want = ref.value.map((v, i) => v + base[i]);
      const tol = ref.roundoff.map((r, i) => r + 2 * EPS32 * (Math.abs(base[i]) + Math.abs(ref.value[i])));
      const bad = firstViolation(got, want, tol);
      if (bad) throw new Error(`problem ${p}: ${bad}`);
      expect(c.subarray(p * strideC + M * N, (p + 1) * strideC)).toEqual(c0.subarray(p * strideC + M * N, (p + 1) * strideC));
    }
  });

  test('K = 0 gives zeros (or leaves C with accumulate)', () => {
    const c = new Float32Array(6).fill(5);
    atLevel(level, () => native.gemmF32(new Float32Array(0), new Float32Array(0), c, 2, 3, 0, false, false, { accumulate: true }));
    expect(Array.from(c)).toEqual([5, 5, 5, 5, 5, 5]);
    atLevel(level, () => native.gemmF32(new Float32Array(0), new Float32Array(0), c, 2, 3, 0, false, false));
    expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

test('gemmF32: 1 and 2 threads give identical results', () => {
  for (const [M, N, K, tb] of [
    [256, 520, 300, false],
    [1, 4096, 512, false],
    [1, 4096, 512, true],
  ] as const) {
    const a = randomFloats(M * K, 11),
      b = randomFloats(K * N, 12);
    const one = new Float32Array(M * N),
      two = new Float32Array(M * N);
    atLevel(native.level(), () => native.gemmF32(a, b, one, M, N, K, false, tb), 1);
    atLevel(native.level(), () => native.gemmF32(a, b, two, M, N, K, false, tb), 2);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
  }
});
