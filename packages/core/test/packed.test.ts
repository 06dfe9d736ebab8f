import * as tf from '@tensorflow/tfjs-core';
import {
  dequantizeRowsInto,
  Embedding,
  Linear,
  PackedGather,
  PackedMatMul,
  packedByteLength,
  packedMatMul,
  PackedTensor,
  quantizeRows,
  type PackedFormat,
} from '../src';
import { describeBackends, expectClose, expectNoTensorLeak, maxAbsDiff, randomFloats, watchFastPath } from '../src/testing';

const f16 = (bytes: Uint8Array, at: number) => bytes[at] | (bytes[at + 1] << 8);

describe('packed block layouts (GGUF)', () => {
  it('q4_0: the largest-magnitude weight keeps its sign in d, weights j and j+16 share byte j', () => {
    // Block: weights k·0.5 for k = −8..7, twice. max |x| = 4 at x = −4, so d = −4 / −8 = 0.5 and
    // each weight k·0.5 maps exactly to nibble k + 8.
    const x = Float32Array.from({ length: 32 }, (_, j) => ((j % 16) - 8) * 0.5);
    const bytes = quantizeRows('q4_0', x, 1, 32);
    expect(bytes.length).toBe(18);
    expect(f16(bytes, 0)).toBe(0x3800); // 0.5 in IEEE half
    expect([...bytes.subarray(2)]).toEqual(Array.from({ length: 16 }, (_, j) => j | (j << 4)));
    const back = new Float32Array(32);
    dequantizeRowsInto('q4_0', bytes, 32, 0, 1, back);
    expect([...back]).toEqual([...x]);
  });

  it('q4_0: a positive extreme gives a negative scale; the opposite extreme clamps to nibble 15', () => {
    const x = new Float32Array(32);
    x[0] = 4; // d = 4 / −8 = −0.5: x·(1/d) = −8 → nibble 0
    x[16] = -4; // +8 + 8.5 = 16.5 → 16, clamped to 15
    const bytes = quantizeRows('q4_0', x, 1, 32);
    expect(f16(bytes, 0)).toBe(0xb800); // −0.5
    expect(bytes[2]).toBe(0 | (15 << 4));
    expect(bytes[3]).toBe(8 | (8 << 4)); // zeros → nibble 8
  });

  it('q8_0: d = amax / 127, values rounded half away from zero', () => {
    // amax = 127 → d = 1 exactly; −2.5 rounds to −3 (C roundf), 2.5 to 3.
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = -2.5;
    x[2] = 2.5;
    x[3] = -127;
    x[4] = 0.49;
    const bytes = quantizeRows('q8_0', x, 1, 32);
    expect(bytes.length).toBe(34);
    expect(f16(bytes, 0)).toBe(0x3c00); // 1.0
    const q = new Int8Array(bytes.buffer, 2, 32);
    expect([...q.subarray(0, 5)]).toEqual([127, -3, 3, -127, 0]);
  });

  it('bf16: round to nearest even, NaN stays NaN', () => {
    const bits = new Uint32Array([0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x7fc00001]);
    const bytes = quantizeRows('bf16', new Float32Array(bits.buffer), 1, 5);
    const out = new Uint16Array(bytes.buffer);
    expect([...out].slice(0, 4)).toEqual([0x3f80, 0x3f80, 0x3f82, 0x3f81]);
    expect(out[4] & 0x7f80).toBe(0x7f80);
    expect(out[4] & 0x7f).not.toBe(0);
  });

  it('round trips within half a quantization step', () => {
    const cols = 96;
    const x = randomFloats(3 * cols, 7, 3);
    for (const format of ['q8_0', 'q4_0'] as const) {
      const bytes = quantizeRows(format, x, 3, cols);
      expect(bytes.length).toBe(packedByteLength(format, [3, cols]));
      const back = new Float32Array(x.length);
      dequantizeRowsInto(format, bytes, cols, 0, 3, back);
      for (let b = 0; b < x.length / 32; b++) {
        const block = x.subarray(32 * b, 32 * b + 32);
        const amax = Math.max(...block.map(Math.abs));
        // q8_0 is symmetric: half a step. q4_0 spans [−8, 7] steps with the extreme at −8, so values
        // near the opposite extreme clamp to 7: up to one step. Plus the f16 rounding of the scale
        // (relative 2^-11) over up to 8 or 127 steps.
        const bound = format === 'q8_0' ? (amax / 127) * 0.5 : amax / 8;
        for (let j = 0; j < 32; j++) {
          expect(Math.abs(back[32 * b + j] - block[j])).toBeLessThanOrEqual(bound + amax * 2 ** -10);
        }
      }
    }
  });

  it('rejects rows that are not whole blocks and arrays of the wrong size', () => {
    expect(() => quantizeRows('q4_0', new Float32Array(48), 1, 48)).toThrow(/multiple of 32 weights, got 48/);
    expect(() => quantizeRows('q8_0', new Float32Array(32), 2, 32)).toThrow(/src holds 32 values/);
    expect(() => PackedTensor.fromBytes('q8_0', [2, 32], new Uint8Array(10))).toThrow(/is 68 bytes, got 10/);
  });
});

/** float64 x · Wᵀ from the unpacked weight: the oracle of the packed matmul. */
function oracleMatMul(x: Float32Array, n: number, w: Float32Array, out: number, inF: number): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let k = 0; k < inF; k++) acc += x[r * inF + k] * w[o * inF + k];
      y[r * out + o] = acc;
    }
  }
  return y;
}

const FORMATS: PackedFormat[] = ['bf16', 'q8_0', 'q4_0'];

/**
 * How far a packed matmul may be from the float64 oracle on `backend`. Native q8_0/q4_0 kernels
 * quantize each 32-block of activations to int8 first (as llama.cpp does): an activation moves by
 * at most half its block's step amax/127, so y[r, o] moves by at most Σ_k |w[o, k]| · step(r, k) / 2.
 * wasm's SIMD kernels quantize to int16 (step amax/32767). Everything else is float32 rounding.
 */
function matmulTolerance(
  backend: string,
  format: PackedFormat,
  x: Float32Array,
  n: number,
  w: Float32Array,
  out: number,
  inF: number,
): number {
  const levels = format === 'bf16' ? 0 : backend === 'native' ? 127 : backend === 'wasm' ? 32767 : 0;
  let worst = 0;
  for (let r = 0; r < n && levels; r++) {
    for (let o = 0; o < out; o++) {
      let bound = 0;
      for (let b = 0; b < inF; b += 32) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[r * inF + b + j]));
        for (let j = 0; j < 32; j++) bound += (Math.abs(w[o * inF + b + j]) * amax) / levels / 2;
      }
      worst = Math.max(worst, bound);
    }
  }
  return worst * 1.01 + 1e-4;
}

describeBackends('packed weights', (backend) => {
  it.each(FORMATS)('%s matmul: the fast path ran and agrees with the float64 oracle and the reference', (format) => {
    const watch = watchFastPath(backend, PackedMatMul, `matmul.${format}`);
    for (const [n, out, inF] of [
      [1, 5, 64],
      [3, 17, 96],
      [7, 2, 32],
    ]) {
      const wf = randomFloats(out * inF, out + inF);
      const xf = randomFloats(n * inF, n);
      const w = PackedTensor.fromFloats(format, [out, inF], wf);
      const unpacked = new Float32Array(out * inF);
      dequantizeRowsInto(format, quantizeRows(format, wf, out, inF), inF, 0, out, unpacked);
      const x = tf.tensor2d(xf, [n, inF]);
      const y = packedMatMul(x, w);
      const [ref] = PackedMatMul.reference({ x, w: w.bytes }, { format, outFeatures: out, inFeatures: inF, interleaved: w.interleaved });
      expect(y.shape).toEqual([n, out]);
      const atol = matmulTolerance(backend, format, xf, n, unpacked, out, inF);
      expectClose(y, Array.from(oracleMatMul(xf, n, unpacked, out, inF)), { atol });
      expectClose(y, ref, { atol });
      tf.dispose([x, y, ref]);
      w.dispose();
    }
    expect(watch.calls()).toBe(3);
    watch.restore();
  });

  it('keeps leading dimensions and checks shapes', () => {
    const w = PackedTensor.fromFloats('q8_0', [4, 32], randomFloats(128, 1));
    const y = packedMatMul(tf.zeros([2, 3, 32]), w);
    expect(y.shape).toEqual([2, 3, 4]);
    expect(() => packedMatMul(tf.zeros([2, 31]), w)).toThrow(/do not end in the weight's 32 input features/);
    tf.dispose(y);
    w.dispose();
  });

  it('differentiates with respect to the activations: dx = dy · W', () => {
    const [n, out, inF] = [2, 3, 32];
    const wf = randomFloats(out * inF, 3);
    const w = PackedTensor.fromFloats('q4_0', [out, inF], wf);
    const unpacked = w.dequantize();
    const x = tf.tensor2d(randomFloats(n * inF, 4), [n, inF]);
    const dy = tf.tensor2d(randomFloats(n * out, 5), [n, out]);
    const dx = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(packedMatMul(xs, w), dy)))(x);
    const expected = tf.matMul(dy, unpacked);
    expectClose(dx, expected, { atol: 1e-5 });
    tf.dispose([unpacked, x, dy, dx, expected]);
    w.dispose();
  });

  it.each(FORMATS)('%s gather: the rows asked for, unpacked, by the fused kernel', (format) => {
    const watch = watchFastPath(backend, PackedGather, `dequantizeRows.${format}`);
    const wf = randomFloats(6 * 64, 9);
    const table = PackedTensor.fromFloats(format, [6, 64], wf);
    const full = table.dequantize();
    const ids = tf.tensor2d([5, 0, 2, 2], [2, 2], 'int32');
    const rows = tf.tidy(() => tf.reshape(tf.gather(full, tf.reshape(ids, [-1])), [2, 2, 64]));
    const zeros = new Embedding(6, 64).initialize('zeros');
    const got = tf.tidy(() => zeros.forward(ids)); // the float path
    expectClose(got, new Array(4 * 64).fill(0));
    zeros.dispose();
    const e = new Embedding(6, 64);
    e.weight.assignPacked(table);
    const looked = e.forward(ids);
    expectClose(looked, rows, { atol: 0, rtol: 0 });
    expect(watch.calls()).toBe(1);
    watch.restore();
    tf.dispose([full, ids, rows, got, looked]);
    e.dispose();
  });

  it('Linear, Embedding.attend and Parameter.pack/unpack use the packed weight', () => {
    const lin = new Linear(64, 8);
    const wf = randomFloats(8 * 64, 11);
    lin.weight.assign(tf.tensor2d(wf, [8, 64]));
    const x = tf.tensor2d(randomFloats(3 * 64, 12), [3, 64]);
    const dense = lin.forward(x);
    lin.weight.pack('q8_0');
    expect(lin.weight.dtype).toBe('q8_0');
    expect(() => lin.weight.value).toThrow(/held packed as q8_0/);
    const packed = lin.forward(x);
    const unpacked = lin.weight.packed!.dequantize();
    // The fast paths quantize activations per 32-block (int16 on wasm, int8 on native):
    // |Δ| ≤ Σ_j |w_j| · amax / levels ≤ 64 · 1 · 1 / 127 ≈ 0.5 at worst; the matmul test checks the exact bound.
    expectClose(packed, tf.matMul(x, unpacked, false, true), { atol: backend === 'wasm' ? 1e-3 : backend === 'native' ? 0.05 : 1e-5 });
    // q8_0 of unit-range weights over 64 inputs: within 0.05 of float32, but not equal to it.
    expectClose(packed, dense, { atol: 0.05 });
    expect(maxAbsDiff(packed, dense)).toBeGreaterThan(0);
    lin.weight.unpack();
    expect(lin.weight.dtype).toBe('f32');
    const again = lin.forward(x);
    expectClose(again, tf.matMul(x, unpacked, false, true), { atol: 1e-5 });

    const head = new Embedding(8, 64, { tiedHead: true });
    head.weight.assign(tf.tensor2d(wf, [8, 64]));
    head.weight.pack('bf16');
    const scores = head.attend(x);
    const bf = head.weight.packed!.dequantize();
    expectClose(scores, tf.matMul(x, bf, false, true), { atol: 1e-5 });
    tf.dispose([x, dense, packed, unpacked, again, scores, bf]);
    lin.dispose();
    head.dispose();
  });

  it('packs in place in backend memory and reads back the same bytes', () => {
    const wf = randomFloats(4 * 64, 13);
    const expected = quantizeRows('q4_0', wf, 4, 64);
    const a = PackedTensor.fromFloats('q4_0', [4, 64], wf);
    const b = PackedTensor.fromBytes('q4_0', [4, 64], expected);
    const c = PackedTensor.fromWriter('q4_0', [4, 64], (bytes) => bytes.set(expected));
    for (const p of [a, b, c]) {
      expect(p.byteLength).toBe(expected.length);
      expect([...p.readBytes()]).toEqual([...expected]);
      p.dispose();
    }
    expect(() => a.bytes).toThrow(/has been disposed/);
    expect(backend).toBeDefined();
  });

  it('does not leak tensors', async () => {
    const w = PackedTensor.fromFloats('q4_0', [8, 32], randomFloats(256, 14));
    const x = tf.tensor2d(randomFloats(64, 15), [2, 32]);
    await expectNoTensorLeak(() => {
      tf.dispose(packedMatMul(x, w));
      tf.grad((xs: tf.Tensor) => tf.sum(packedMatMul(xs, w)))(x).dispose();
    });
    tf.dispose(x);
    w.dispose();
  });
});
