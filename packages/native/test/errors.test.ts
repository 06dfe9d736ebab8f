import { native } from './setup';

/** The thrown error's class name and message (errors made by the addon come from Node's realm,
 * not jest's sandbox, so instanceof does not apply). */
function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    const e = error as Error;
    return `${e.name}: ${e.message}`;
  }
  return 'nothing thrown';
}

const f32 = (n: number) => new Float32Array(n);
const u8 = (n: number) => new Uint8Array(n);

describe('argument checks in the typed API', () => {
  test('quantize / dequantize', () => {
    expect(thrown(() => native.quantize('q5_0' as never, f32(32), 1, 32, u8(34)))).toBe(
      "TypeError: quantize: format must be one of f32, bf16, q8_0, q4_0, got the string 'q5_0'",
    );
    expect(thrown(() => native.quantize('q4_0', f32(48), 1, 48, u8(27)))).toBe(
      'RangeError: quantize: cols must be a multiple of 32 for q4_0 (its blocks hold 32 values), got 48',
    );
    expect(thrown(() => native.quantize('q8_0', f32(64), 2.5, 32, u8(68)))).toBe(
      'RangeError: quantize: rows must be a non-negative integer, got 2.5',
    );
    expect(thrown(() => native.quantize('q8_0', new Float64Array(32) as never, 1, 32, u8(34)))).toBe(
      'TypeError: quantize: src must be a Float32Array, got a Float64Array of length 32',
    );
    expect(thrown(() => native.quantize('q8_0', f32(64), 1, 32, u8(34)))).toBe(
      'RangeError: quantize: src must hold rows * cols = 1 * 32 = 32 elements, got 64',
    );
    expect(thrown(() => native.quantize('q8_0', f32(64), 2, 32, u8(34)))).toBe(
      "RangeError: quantize: dst must hold packedByteLength('q8_0', 2, 32) = 68 bytes, got 34",
    );
    expect(thrown(() => native.dequantize('bf16', [] as never, 1, 2, f32(2)))).toBe(
      'TypeError: dequantize: src must be a typed array (e.g. a Uint8Array), got an Array',
    );
  });

  test('dequantizeRows', () => {
    expect(thrown(() => native.dequantizeRows('q4_0', u8(18 * 3), 32, new Int32Array([0, 3]), f32(64)))).toBe(
      'RangeError: dequantizeRows: rowIndices[1] = 3 is outside the 3 rows of src',
    );
    expect(thrown(() => native.dequantizeRows('q4_0', u8(20), 32, new Int32Array([0]), f32(32)))).toBe(
      "RangeError: dequantizeRows: src must hold whole rows of rowBytes('q4_0', 32) = 18 bytes, got 20 bytes",
    );
    expect(thrown(() => native.dequantizeRows('q4_0', u8(18), 32, [0] as never, f32(32)))).toBe(
      'TypeError: dequantizeRows: rowIndices must be an Int32Array, got an Array',
    );
  });

  test('matmul', () => {
    const w = u8(native.packedByteLength('q4_0', 4, 64));
    expect(thrown(() => native.matmul('q4_0', w, 4, 64, f32(63), 1, f32(4)))).toBe(
      'RangeError: matmul: x must hold nRows * inFeatures = 1 * 64 = 64 elements, got 63',
    );
    expect(thrown(() => native.matmul('q4_0', w, 4, 64, f32(64), 1, f32(5)))).toBe(
      'RangeError: matmul: y must hold nRows * outFeatures = 1 * 4 = 4 elements, got 5',
    );
    expect(thrown(() => native.matmul('q4_0', u8(10), 4, 64, f32(64), 1, f32(4)))).toBe(
      "RangeError: matmul: w must hold packedByteLength('q4_0', outFeatures, inFeatures) = packedByteLength('q4_0', 4, 64) = 144 bytes, got 10",
    );
    expect(thrown(() => native.matmul('q8_0', w, 4, 40, f32(40), 1, f32(4)))).toBe(
      'RangeError: matmul: inFeatures must be a multiple of 32 for q8_0 (its blocks hold 32 values), got 40',
    );
    expect(thrown(() => native.matmul('q4_0', w, 4, 64, f32(64), -1, f32(4)))).toBe(
      'RangeError: matmul: nRows must be a non-negative integer, got -1',
    );
    expect(thrown(() => native.matmul('q4_0', w, 4, 64, f32(64), 1, f32(4), { accumulate: 1 as never }))).toBe(
      'TypeError: matmul: options.accumulate must be a boolean, got number 1',
    );
  });

  test('gemmF32', () => {
    expect(thrown(() => native.gemmF32(f32(6), f32(11), f32(8), 2, 4, 3, false, false))).toBe(
      'RangeError: gemmF32: b must hold at least 12 elements (batch 1 of K x N = 3 x 4, strideB 12), got 11',
    );
    expect(thrown(() => native.gemmF32(f32(5), f32(12), f32(8), 2, 4, 3, true, false))).toBe(
      'RangeError: gemmF32: a must hold at least 6 elements (batch 1 of K x M = 3 x 2, strideA 6), got 5',
    );
    expect(thrown(() => native.gemmF32(f32(12), f32(12), f32(8), 2, 4, 3, false, false, { batch: 2, strideC: 7 }))).toBe(
      "RangeError: gemmF32: options.strideC must be at least M * N = 8 so that the batch's outputs do not overlap, got 7",
    );
    expect(thrown(() => native.gemmF32(f32(12), f32(24), f32(15), 2, 4, 3, false, false, { batch: 2 }))).toBe(
      'RangeError: gemmF32: c must hold at least 16 elements (batch 2 of M x N = 2 x 4, strideC 8), got 15',
    );
    expect(thrown(() => native.gemmF32(f32(6), f32(12), f32(8), 2, 4, 3, 'yes' as never, false))).toBe(
      "TypeError: gemmF32: transposeA must be a boolean, got the string 'yes'",
    );
  });

  test('levels, kernels, threads', () => {
    expect(thrown(() => native.setLevel('sse' as never))).toBe(
      "RangeError: setLevel: level must be one of scalar, avx2, avx512, got the string 'sse'",
    );
    expect(thrown(() => native.kernelLevel('matmul.q5_0' as never))).toMatch(
      /^RangeError: kernelLevel: kernel must be one of quantize.f32, .*gemmF32, ssmScan, causalConv1d, gatedRmsNorm, swiglu, moeExperts, attention, ssmScanGrad, got the string 'matmul.q5_0'$/,
    );
    expect(thrown(() => native.setThreads(0))).toBe('RangeError: setThreads: n must be between 1 and 256, got 0');
  });
});

describe('the C side checks again (the raw binding, bypassing the typed API)', () => {
  const raw = require(native.binaryPath) as Record<string, (...args: unknown[]) => unknown>;

  test('types, sizes and formats', () => {
    expect(thrown(() => raw.matmul('q4_0', u8(144), 4, 64, f32(63), 1, f32(4), false))).toBe(
      'RangeError: matmul: x must hold 64 elements, got 63',
    );
    expect(thrown(() => raw.matmul('q4_0', u8(143), 4, 64, f32(64), 1, f32(4), false))).toBe(
      'RangeError: matmul: w must hold 144 bytes, got 143',
    );
    expect(thrown(() => raw.matmul('q4_0', u8(144), 4, 48, f32(48), 1, f32(4), false))).toBe(
      'RangeError: matmul: inFeatures must be a multiple of 32 for q4_0 (its blocks hold 32 values), got 48',
    );
    expect(thrown(() => raw.matmul('q4_0', u8(144), 4, 64, new Int32Array(64), 1, f32(4), false))).toBe(
      'TypeError: matmul: x must be a Float32Array, got a Int32Array',
    );
    expect(thrown(() => raw.matmul('q4_0', u8(144), 4.5, 64, f32(64), 1, f32(4), false))).toBe(
      'RangeError: matmul: outFeatures must be a non-negative integer, got 4.5',
    );
    expect(thrown(() => raw.quantize('q9', f32(32), 1, 32, u8(34)))).toBe(
      "RangeError: quantize: format must be one of f32, bf16, q8_0, q4_0, got 'q9'",
    );
    expect(thrown(() => raw.dequantizeRows('q8_0', u8(34), 32, new Int32Array([1]), f32(32)))).toBe(
      'RangeError: dequantizeRows: rowIndices[0] = 1 is outside the 1 rows of src',
    );
    expect(thrown(() => raw.gemmF32(f32(6), f32(11), f32(8), 2, 4, 3, false, false, 1, 6, 12, 8, false))).toMatch(
      /^RangeError: gemmF32: b must hold at least 12 elements/,
    );
    expect(thrown(() => raw.setLevel('fast'))).toBe("RangeError: setLevel: level must be one of scalar, avx2, avx512, got 'fast'");
  });

  test('an output sharing memory with an input is refused', () => {
    const buffer = new Float32Array(68);
    const x = buffer.subarray(0, 64),
      y = buffer.subarray(60, 64);
    expect(thrown(() => raw.matmul('f32', f32(4 * 64), 4, 64, x, 1, y, false))).toBe('RangeError: matmul: y must not share memory with x');
    const data = new Float32Array(64);
    expect(thrown(() => raw.quantize('bf16', data, 1, 64, new Uint8Array(data.buffer, 0, 128)))).toBe(
      'RangeError: quantize: dst must not share memory with src',
    );
    // disjoint parts of one buffer are fine
    raw.matmul('f32', f32(4 * 64), 4, 64, buffer.subarray(0, 64), 1, buffer.subarray(64, 68), false);
  });
});
