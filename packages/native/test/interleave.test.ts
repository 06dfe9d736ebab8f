import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Format } from '../src';
import { dequantize, firstViolation, matmulReference, quantize, randomFloats } from './reference';
import { atLevel, availableLevels, calls, native } from './setup';

const BLOCK_FORMATS: Format[] = ['q8_0', 'q4_0'];
/* [outFeatures, inFeatures, nRows]: whole groups of 16 rows, fewer rows than one group, groups plus
 * a ragged tail, decode and prefill-sized activation row counts (tiles of 6 and their remainders). */
const SHAPES: Array<[number, number, number]> = [
  [16, 32, 1],
  [7, 96, 2],
  [33, 2048, 3],
  [130, 96, 13],
  [64, 2048, 1],
  [48, 160, 64],
];

function interleaved(format: Format, w: Uint8Array, rows: number, cols: number): Uint8Array {
  const copy = w.slice();
  native.interleave(format, copy, rows, cols, true);
  return copy;
}

describe.each(BLOCK_FORMATS)('interleaved %s weights', (format) => {
  test('the layout moves every group and converts back bit-exactly; the tail rows stay in row order', () => {
    const [rows, cols] = [37, 96];
    const w = quantize(format, randomFloats(rows * cols, 11));
    const il = interleaved(format, w, rows, cols);
    const rowBytes = native.rowBytes(format, cols);
    expect(Buffer.from(il.subarray(0, 32 * rowBytes)).equals(Buffer.from(w.subarray(0, 32 * rowBytes)))).toBe(false);
    expect(Buffer.from(il.subarray(32 * rowBytes)).equals(Buffer.from(w.subarray(32 * rowBytes)))).toBe(true);
    native.interleave(format, il, rows, cols, false);
    expect(Buffer.from(il).equals(Buffer.from(w))).toBe(true);
  });

  test('row 16g + p: lane p of each block vector and scale p of the block (the documented layout)', () => {
    const [rows, cols] = [16, 64];
    const w = quantize(format, randomFloats(rows * cols, 12));
    const il = interleaved(format, w, rows, cols);
    const blockBytes = format === 'q4_0' ? 18 : 34,
      quantBytes = blockBytes - 2;
    const rowBytes = native.rowBytes(format, cols),
      blocks = cols / 32;
    for (const [p, b, t] of [
      [0, 0, 0],
      [5, 1, 7],
      [15, 1, quantBytes - 1],
    ]) {
      const natural = w[p * rowBytes + b * blockBytes + 2 + t];
      expect(il[b * quantBytes * 16 + Math.floor(t / 4) * 64 + p * 4 + (t % 4)]).toBe(natural);
      const scale = blocks * quantBytes * 16 + (b * 16 + p) * 2;
      expect([il[scale], il[scale + 1]]).toEqual([w[p * rowBytes + b * blockBytes], w[p * rowBytes + b * blockBytes + 1]]);
    }
  });

  describe.each(availableLevels)('at %s', (level) => {
    // Interleaved groups have avx512 and scalar kernels; an avx2 cap runs the scalar one.
    const ran = level === 'avx512' ? 'avx512' : 'scalar';
    test('matmul equals the float64 reference within float32 summation error, and its kernel ran', () => {
      for (const [out, inF, n] of SHAPES) {
        const w = quantize(format, randomFloats(out * inF, out * 7919 + inF));
        const x = randomFloats(n * inF, n * 104729 + inF);
        const ref = matmulReference(format, w, out, inF, x, n);
        const il = interleaved(format, w, out, inF);
        const y = new Float32Array(n * out);
        const before = calls(`matmul.${format}`, ran);
        atLevel(level, () => native.matmul(format, il, out, inF, x, n, y, { interleaved: true }));
        expect(calls(`matmul.${format}`, ran)).toBe(before + 1);
        const bad = firstViolation(y, ref.value, ref.roundoff);
        if (bad) throw new Error(`${format} ${out}x${inF} n=${n}: ${bad}`);
      }
    });

    test('accumulate adds to y', () => {
      const [out, inF, n] = [33, 96, 5];
      const w = quantize(format, randomFloats(out * inF, 3));
      const x = randomFloats(n * inF, 4);
      const ref = matmulReference(format, w, out, inF, x, n);
      const y0 = randomFloats(n * out, 5),
        y = y0.slice();
      atLevel(level, () =>
        native.matmul(format, interleaved(format, w, out, inF), out, inF, x, n, y, { accumulate: true, interleaved: true }),
      );
      const tol = ref.roundoff.map((r, i) => r + 2 * 1.2e-7 * (Math.abs(y0[i]) + Math.abs(ref.value[i])));
      const bad = firstViolation(
        y,
        ref.value.map((v, i) => v + y0[i]),
        tol,
      );
      if (bad) throw new Error(`accumulate: ${bad}`);
    });

    test('dequantizeRows gathers the same rows as from row order', () => {
      const [rows, cols] = [37, 96];
      const w = quantize(format, randomFloats(rows * cols, 6));
      const want = dequantize(format, w, rows * cols);
      const idx = new Int32Array([0, 36, 17, 15, 16, 31, 32]);
      const got = new Float32Array(idx.length * cols);
      atLevel(level, () => native.dequantizeRows(format, interleaved(format, w, rows, cols), cols, idx, got, { interleaved: true }));
      idx.forEach((r, i) =>
        expect(Array.from(got.subarray(i * cols, (i + 1) * cols))).toEqual(Array.from(want.subarray(r * cols, (r + 1) * cols))),
      );
    });
  });

  test('1 and 2 threads give identical results', () => {
    const [out, inF] = [130, 2048];
    const il = interleaved(format, quantize(format, randomFloats(out * inF, 7)), out, inF);
    for (const n of [1, 64]) {
      const x = randomFloats(n * inF, n);
      const one = new Float32Array(n * out),
        two = new Float32Array(n * out);
      atLevel(native.level(), () => native.matmul(format, il, out, inF, x, n, one, { interleaved: true }), 1);
      atLevel(native.level(), () => native.matmul(format, il, out, inF, x, n, two, { interleaved: true }), 2);
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
  });
});

describe('interleave errors and mappings', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-native-interleave-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('formats without blocks, wrong sizes and read-only mappings are refused by name', () => {
    const f32 = new Uint8Array(native.packedByteLength('f32', 16, 32));
    expect(() => native.interleave('f32', f32, 16, 32, true)).toThrow(
      /interleave: only q8_0 and q4_0 weights have an interleaved layout, got f32/,
    );
    expect(() =>
      native.matmul(
        'bf16',
        new Uint8Array(native.packedByteLength('bf16', 16, 32)),
        16,
        32,
        new Float32Array(32),
        1,
        new Float32Array(16),
        { interleaved: true },
      ),
    ).toThrow(/matmul: only q8_0 and q4_0/);
    expect(() => native.interleave('q4_0', new Uint8Array(10), 16, 32, true)).toThrow(/interleave: bytes/);
    const w = quantize('q4_0', randomFloats(16 * 32, 8));
    const file = path.join(dir, 'w.bin');
    fs.writeFileSync(file, w);
    const readOnly = new Uint8Array(native.mmapFile(file));
    expect(() => native.interleave('q4_0', readOnly, 16, 32, true)).toThrow(/read-only memory mapping.*writable: true/);
  });

  test('a writable mapping is converted in place, copy-on-write: the file is unchanged', () => {
    const w = quantize('q4_0', randomFloats(32 * 64, 9));
    const file = path.join(dir, 'cow.bin');
    fs.writeFileSync(file, w);
    const mapped = new Uint8Array(native.mmapFile(file, { writable: true }));
    native.interleave('q4_0', mapped, 32, 64, true);
    expect(Buffer.from(mapped).equals(Buffer.from(interleaved('q4_0', w, 32, 64)))).toBe(true);
    expect(Buffer.from(fs.readFileSync(file)).equals(Buffer.from(w))).toBe(true);
  });
});
