import { rng } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

/** ops-moe's silu (the JavaScript body), in float64: g·sigmoid(g), finite for large |g|. */
function silu64(g: number): number {
  return g >= 0 ? g / (1 + Math.exp(-g)) : (g * Math.exp(g)) / (1 + Math.exp(g));
}

/** The float64 SwiGLU of a [rows, 2·inter]: the oracle. */
function swigluReference(a: Float32Array, rows: number, inter: number): Float64Array {
  const out = new Float64Array(rows * inter);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < inter; i++) out[r * inter + i] = silu64(a[r * 2 * inter + i]) * a[r * 2 * inter + inter + i];
  return out;
}

/** Gates of random magnitude up to 30 (the range where silu bends), ups in [−3, 3). */
function swigluInputs(rows: number, inter: number, seed: number): Float32Array {
  const next = rng(seed);
  const a = new Float32Array(rows * 2 * inter);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < inter; i++) {
      a[r * 2 * inter + i] = (next() * 2 - 1) * 30 * next();
      a[r * 2 * inter + inter + i] = (next() * 2 - 1) * 3;
    }
  return a;
}

/** Largest |got − want| / (atol + rtol·|want|); ≤ 1 passes. */
function worst(got: Float32Array, want: Float64Array, atol: number, rtol: number): number {
  let w = 0;
  for (let i = 0; i < got.length; i++) w = Math.max(w, Math.abs(got[i] - want[i]) / (atol + rtol * Math.abs(want[i])));
  return Number.isNaN(w) ? Infinity : w;
}

/** One SwiGLU of a single (gate, up) pair at the current level. */
function one(gate: number, up: number): number {
  const act = new Float32Array(1);
  native.swiglu(Float32Array.of(gate, up), 1, 1, act);
  return act[0];
}

/* Rows around the 8- and 16-lane steps and their masked tails, H-Micro's decode call (1 × 8192),
 * blocks two threads split at row ends (4 × 8192) and inside rows (2 × 9001), and empty ones. */
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 7],
  [2, 15],
  [3, 16],
  [1, 17],
  [2, 33],
  [5, 100],
  [1, 8192],
  [4, 8192],
  [2, 9001],
  [0, 5],
  [3, 0],
];

describe.each(availableLevels)('swiglu at %s', (level) => {
  test('equals the float64 formula on ragged shapes, with 1 and 2 threads', () => {
    const before = calls('swiglu', level);
    for (const threads of [1, 2])
      for (const [rows, inter] of SHAPES) {
        const a = swigluInputs(rows, inter, rows * 131 + inter);
        const act = new Float32Array(rows * inter).fill(12345);
        atLevel(level, () => native.swiglu(a, rows, inter, act), threads);
        // A few float32 roundings after the exp: within 4 ulp of the float64 value.
        expect(worst(act, swigluReference(a, rows, inter), 1e-37, 5e-7)).toBeLessThanOrEqual(1);
      }
    expect(calls('swiglu', level)).toBe(before + 2 * SHAPES.length);
    expect(atLevel(level, () => native.kernelLevel('swiglu'))).toBe(level);
  });

  test('large, infinite and NaN inputs give what the JavaScript body gives', () => {
    atLevel(level, () => {
      // Large |g| stays finite: silu(g) → g above, → −0 below.
      expect(one(1e4, 1)).toBe(1e4);
      expect(one(1e4, -0.5)).toBe(-5e3);
      expect(Object.is(one(-1e4, 1), -0)).toBe(true);
      expect(Object.is(one(-1e4, -2), 0)).toBe(true);
      expect(one(3e38, 1)).toBe(Math.fround(3e38));
      expect(one(3e38, 2)).toBe(Infinity);
      for (const g of [88.72, 87.4, 17, 1, 0.5, -0.5, -1, -17, -87.4, -88.72])
        expect(Math.abs(one(g, 1.5) - silu64(Math.fround(g)) * 1.5)).toBeLessThanOrEqual(3e-7 * Math.abs(silu64(Math.fround(g)) * 1.5));
      // Infinities and NaN, case by case as silu64 · up evaluates them.
      const cases: Array<[number, number]> = [
        [Infinity, 1],
        [Infinity, -2],
        [Infinity, 0],
        [-Infinity, 1],
        [-Infinity, 0],
        [NaN, 1],
        [NaN, 0],
        [0, Infinity],
        [-0, 1],
        [0, -1],
        [2, Infinity],
        [-2, -Infinity],
        [2, NaN],
        [1e4, Infinity],
        [-1e4, 0],
      ];
      for (const [g, u] of cases) expect([g, u, one(g, u)]).toEqual([g, u, Math.fround(silu64(g) * u)]);
    });
  });

  test('below −88.72 the float32 silu is −0, where the float64 body keeps |silu| < 3e−37', () => {
    atLevel(level, () => {
      for (const g of [-88.73, -95, -100, -700]) {
        expect(Object.is(one(g, 1), -0)).toBe(true);
        expect(Math.abs(silu64(Math.fround(g)))).toBeLessThan(3e-37);
      }
      // So an infinite up gives −0·∞ = NaN here, where silu64(g)·∞ is −∞.
      expect(one(-100, Infinity)).toBeNaN();
    });
  });
});

describe('swiglu argument checks', () => {
  const thrown = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      return `${(error as Error).name}: ${(error as Error).message}`;
    }
    return 'nothing thrown';
  };

  test('names the argument and the expected length or type', () => {
    const act = new Float32Array(6);
    expect(thrown(() => native.swiglu(new Float32Array(11), 2, 3, act))).toBe(
      'RangeError: swiglu: a must hold rows * 2 * inter = 2 * 2 * 3 = 12 elements, got 11',
    );
    expect(thrown(() => native.swiglu(new Float32Array(12), 2, 3, new Float32Array(12)))).toBe(
      'RangeError: swiglu: act must hold rows * inter = 2 * 3 = 6 elements, got 12',
    );
    expect(thrown(() => native.swiglu(new Float64Array(12) as never, 2, 3, act))).toBe(
      'TypeError: swiglu: a must be a Float32Array, got a Float64Array of length 12',
    );
    expect(thrown(() => native.swiglu(new Float32Array(12), 2, 3, [] as never))).toBe(
      'TypeError: swiglu: act must be a Float32Array, got an Array',
    );
    expect(thrown(() => native.swiglu(new Float32Array(12), 1.5, 3, act))).toBe(
      'RangeError: swiglu: rows must be a non-negative integer, got 1.5',
    );
    expect(thrown(() => native.swiglu(new Float32Array(12), 2, '3' as never, act))).toBe(
      "TypeError: swiglu: inter must be a number, got the string '3'",
    );
  });

  test('the binding refuses an act that shares memory with a', () => {
    const a = new Float32Array(12);
    expect(thrown(() => native.swiglu(a, 2, 3, a.subarray(6)))).toBe('RangeError: swiglu: act must not share memory with a');
  });
});
