import { FORMATS, type Format } from '../src';
import { EPS32, firstViolation, matmulReference, quantize, randomFloats, type Reference } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

/* [outFeatures, inFeatures, nRows]: ragged row counts (not multiples of the 4-row tiles), decode
 * (n = 1) and prefill sizes, one-block, few-block and H-Micro-width rows; at avx512, whole and
 * partial 16-row groups against decode batches (tiles of 8 and a 7-row rest, the largest batch
 * read in registers: 32) and the smallest regrouped prefill (33). */
const SHAPES: Array<[number, number, number]> = [
  [1, 32, 1],
  [7, 96, 2],
  [33, 2048, 3],
  [130, 96, 5],
  [33, 32, 17],
  [7, 2048, 64],
  [130, 2048, 1],
  [64, 96, 64],
  [5, 2048, 17],
  [48, 64, 8],
  [40, 160, 31],
  [17, 32, 32],
  [17, 32, 33],
];

interface Case {
  format: Format;
  out: number;
  inF: number;
  n: number;
  w: Uint8Array;
  x: Float32Array;
  /** Computed on first use (the thread test needs none). */
  readonly ref: Reference;
}

const cases = new Map<string, Case>();
function caseFor(format: Format, out: number, inF: number, n: number): Case {
  const key = `${format} ${out}x${inF} n=${n}`;
  let c = cases.get(key);
  if (!c) {
    const w = quantize(format, randomFloats(out * inF, out * 7919 + inF));
    const x = randomFloats(n * inF, n * 104729 + inF);
    let ref: Reference | undefined;
    c = {
      format,
      out,
      inF,
      n,
      w,
      x,
      get ref() {
        return (ref ??= matmulReference(format, w, out, inF, x, n));
      },
    };
    cases.set(key, c);
  }
  return c;
}

function run(c: Case, level: (typeof availableLevels)[number], y: Float32Array, accumulate = false): void {
  atLevel(level, () => native.matmul(c.format, c.w, c.out, c.inF, c.x, c.n, y, { accumulate }));
}

describe.each(availableLevels)('matmul at %s', (level) => {
  test.each(FORMATS)('%s: equals the float64 reference within float32 summation error', (format: Format) => {
    for (const [out, inF, n] of SHAPES) {
      const c = caseFor(format, out, inF, n);
      const y = new Float32Array(n * out);
      const kernel = `matmul.${format}` as const;
      const ran = atLevel(level, () => native.kernelLevel(kernel));
      expect(ran).toBe(level);
      const before = calls(kernel, level);
      run(c, level, y);
      expect(calls(kernel, level)).toBe(before + 1);
      const bad = firstViolation(y, c.ref.value, c.ref.roundoff);
      if (bad) throw new Error(`${format} ${out}x${inF} n=${n}: ${bad}`);
      if (c.ref.floatValue && c.ref.activationError) {
        // Against unquantized activations the only extra error is x's q8_0 rounding.
        const tol = c.ref.activationError.map((e, i) => e + c.ref.roundoff[i]);
        const worse = firstViolation(y, c.ref.floatValue, tol);
        if (worse) throw new Error(`${format} ${out}x${inF} n=${n} vs float activations: ${worse}`);
      }
    }
  });

  test.each(FORMATS)('%s: accumulate adds to y', (format: Format) => {
    const c = caseFor(format, 33, 96, 5);
    const y0 = randomFloats(c.n * c.out, 5);
    const y = y0.slice();
    run(c, level, y, true);
    const want = c.ref.value.map((v, i) => v + y0[i]);
    const tol = c.ref.roundoff.map((r, i) => r + 2 * EPS32 * (Math.abs(y0[i]) + Math.abs(c.ref.value[i])));
    const bad = firstViolation(y, want, tol);
    if (bad) throw new Error(`${format} accumulate: ${bad}`);
  });

  if (level !== 'scalar')
    test.each(FORMATS)('%s: equals the scalar level within summation-order error', (format: Format) => {
      for (const [out, inF, n] of SHAPES) {
        const c = caseFor(format, out, inF, n);
        const simd = new Float32Array(n * out),
          scalar = new Float32Array(n * out);
        run(c, level, simd);
        run(c, 'scalar', scalar);
        const bad = firstViolation(
          simd,
          scalar,
          c.ref.roundoff.map((r) => 2 * r),
        );
        if (bad) throw new Error(`${format} ${out}x${inF} n=${n}: ${bad}`);
      }
    });
});

describe('matmul threads', () => {
  test.each(FORMATS)('%s: 1 and 2 threads give identical results', (format: Format) => {
    for (const n of [1, 5, 64]) {
      const c = caseFor(format, 130, 2048, n === 64 ? 64 : n);
      const one = new Float32Array(c.n * c.out),
        two = new Float32Array(c.n * c.out);
      atLevel(native.level(), () => native.matmul(format, c.w, c.out, c.inF, c.x, c.n, one), 1);
      atLevel(native.level(), () => native.matmul(format, c.w, c.out, c.inF, c.x, c.n, two), 2);
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
  });
});

describe.each(availableLevels)('matmul empty shapes at %s', (level) => {
  test.each(FORMATS)('%s: no rows, no outputs, or no inputs (zeros; accumulate leaves y)', (format: Format) => {
    const y = new Float32Array([7, 7, 7]);
    const w = new Uint8Array(native.packedByteLength(format, 3, 32));
    atLevel(level, () => native.matmul(format, w, 3, 32, new Float32Array(0), 0, new Float32Array(0)));
    atLevel(level, () => native.matmul(format, new Uint8Array(0), 0, 32, new Float32Array(32), 1, new Float32Array(0)));
    atLevel(level, () => native.matmul(format, new Uint8Array(0), 3, 0, new Float32Array(0), 1, y, { accumulate: true }));
    expect(Array.from(y)).toEqual([7, 7, 7]);
    atLevel(level, () => native.matmul(format, new Uint8Array(0), 3, 0, new Float32Array(0), 1, y));
    expect(Array.from(y)).toEqual([0, 0, 0]);
  });
});
