import { FORMATS, type Format } from '../src';
import { dequantize, quantize, randomFloats } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

const SHAPES: Array<[number, number]> = [
  [1, 32],
  [3, 96],
  [5, 2048],
  [17, 64],
  [130, 160], // above the single-thread threshold: both threads quantize
];

/** Blocks that hit the rules' corners: zeros and -0, ties for the largest magnitude, values on
 * rounding boundaries, NaN / infinity (order-dependent in the reference), tiny and huge scales. */
function specialValues(): Float32Array {
  const blocks: number[][] = [];
  const block = (f: (j: number) => number) => blocks.push(Array.from({ length: 32 }, (_, j) => f(j)));
  block(() => 0);
  block((j) => (j % 2 ? -0 : 0));
  block((j) => (j === 5 || j === 9 ? -3 : j === 7 ? 3 : j / 32)); // first largest magnitude wins
  block((j) => (j === 2 ? 3 : j === 4 ? -3 : 0.1 * j));
  block((j) => (j - 16) / 4); // quarter steps: x * id lands on .5 ties
  block((j) => (j === 0 ? 127 : j - 16.5)); // d = 1: k + 0.5 ties, half away from zero (not to even)
  block((j) => (j === 7 ? NaN : j - 10));
  block((j) => (j === 31 ? NaN : j - 10)); // NaN last: q8_0's amax fold ends on NaN
  block((j) => (j === 0 ? NaN : j === 1 ? -50 : j)); // NaN first
  block((j) => (j === 3 ? -Infinity : j));
  block((j) => (j === 3 ? Infinity : j === 4 ? -Infinity : j));
  block((j) => (j - 12) * 1e-30); // scale below half's subnormals
  block((j) => (j - 12) * 3e-6); // half subnormal scales
  block((j) => (j - 12) * 7e4); // scale overflowing half
  block((j) => (j === 0 ? 3.4e38 : -j)); // near FLT_MAX (bf16 rounds to infinity)
  block((j) => (j % 3 === 0 ? 1.00390625 : 1.01171875 * (j % 2 ? -1 : 1))); // bf16 ties
  return new Float32Array(blocks.flat());
}

function hex(bytes: Uint8Array, at: number): string {
  return Array.from(bytes.subarray(Math.max(0, at - 4), at + 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe.each(availableLevels)('quantize / dequantize at %s', (level) => {
  test.each(FORMATS)('%s: bit-exact with the JS ggml-rule reference on random shapes', (format: Format) => {
    for (const [rows, cols] of SHAPES) {
      const x = randomFloats(rows * cols, rows * 1000 + cols);
      const want = quantize(format, x);
      const got = new Uint8Array(native.packedByteLength(format, rows, cols));
      const kernel = `quantize.${format}` as const;
      const ran = atLevel(level, () => native.kernelLevel(kernel));
      const before = calls(kernel, ran);
      atLevel(level, () => native.quantize(format, x, rows, cols, got));
      expect(calls(kernel, ran)).toBe(before + 1);
      const at = firstDifference(got, want);
      if (at >= 0) throw new Error(`${format} ${rows}x${cols}: byte ${at} differs: got ${hex(got, at)}, want ${hex(want, at)}`);

      const back = new Float32Array(rows * cols);
      atLevel(level, () => native.dequantize(format, got, rows, cols, back));
      expect(Buffer.from(back.buffer).equals(Buffer.from(dequantize(format, want, rows * cols).buffer))).toBe(true);
    }
  });

  test.each(FORMATS)('%s: NaN, infinity, zeros, ties and extreme scales as the reference', (format: Format) => {
    const x = specialValues();
    const rows = x.length / 64;
    const got = new Uint8Array(native.packedByteLength(format, rows, 64));
    atLevel(level, () => native.quantize(format, x, rows, 64, got));
    const want = quantize(format, x);
    const at = firstDifference(got, want);
    if (at >= 0) throw new Error(`${format}: byte ${at} differs: got ${hex(got, at)}, want ${hex(want, at)}`);
    const back = new Float32Array(x.length);
    atLevel(level, () => native.dequantize(format, got, rows, 64, back));
    expect(Buffer.from(back.buffer).equals(Buffer.from(dequantize(format, want, x.length).buffer))).toBe(true);
  });

  test.each(FORMATS)('%s: dequantizeRows gathers rows in any order, repeats included', (format: Format) => {
    const rows = 9,
      cols = 96;
    const packed = quantize(format, randomFloats(rows * cols, 7));
    const all = dequantize(format, packed, rows * cols);
    const indices = new Int32Array([8, 0, 3, 3, 8, 1]);
    const dst = new Float32Array(indices.length * cols);
    const kernel = `dequantizeRows.${format}` as const;
    const ran = atLevel(level, () => native.kernelLevel(kernel));
    const before = calls(kernel, ran);
    atLevel(level, () => native.dequantizeRows(format, packed, cols, indices, dst));
    expect(calls(kernel, ran)).toBe(before + 1);
    indices.forEach((r, i) => expect(dst.subarray(i * cols, (i + 1) * cols)).toEqual(all.subarray(r * cols, (r + 1) * cols)));
  });
});

describe('dispatch', () => {
  test('the best level runs where the CPU has it (scalar is only the oracle there)', () => {
    const best = availableLevels[availableLevels.length - 1];
    for (const format of ['bf16', 'q8_0', 'q4_0'] as const) {
      expect(native.kernelLevel(`quantize.${format}`)).toBe(best);
      expect(native.kernelLevel(`dequantize.${format}`)).toBe(best);
    }
    expect(native.kernelLevel('quantize.f32')).toBe('scalar'); // a copy: no SIMD level
  });

  test('1 and 2 threads give identical bytes', () => {
    const rows = 300,
      cols = 512; // 153600 values: above the single-thread threshold
    const x = randomFloats(rows * cols, 99);
    for (const format of FORMATS) {
      const one = new Uint8Array(native.packedByteLength(format, rows, cols));
      const two = new Uint8Array(one.length);
      atLevel(native.level(), () => native.quantize(format, x, rows, cols, one), 1);
      atLevel(native.level(), () => native.quantize(format, x, rows, cols, two), 2);
      expect(Buffer.from(two).equals(Buffer.from(one))).toBe(true);
      expect(Buffer.from(one).equals(Buffer.from(quantize(format, x)))).toBe(true);
    }
  });
});
