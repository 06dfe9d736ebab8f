import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  initBackend,
  interleavesHere,
  nativeAddon,
  openMappedCheckpoint,
  packedGather,
  packedMatMul,
  PackedTensor,
  quantizeRows,
  writePackedCheckpoint,
  type PackedFormat,
} from '../src';
import { expectClose, randomFloats } from '../src/testing';

const addon = nativeAddon();
const avx512 = addon !== null && addon.kernelLevel('matmul.q4_0') === 'avx512';
// The interleaved layout is made on the native backend where its avx512 kernel runs.
const describeInterleaving = avx512 ? describe : describe.skip;

function dequantized(format: PackedFormat, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  addon!.dequantizeRows(
    format,
    bytes,
    cols,
    Int32Array.from({ length: rows }, (_, i) => i),
    out,
  );
  return out;
}

describeInterleaving.each(['q8_0', 'q4_0'] as PackedFormat[])('%s weights on native (avx512)', (format) => {
  const [rows, cols] = [38, 96]; // two whole groups of 16 rows and a row-order tail of 6 (whole words)
  const values = randomFloats(rows * cols, 3);
  const rowOrder = quantizeRows(format, values, rows, cols);
  let dir: string;

  beforeAll(async () => {
    await initBackend('native');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-interleaved-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  afterEach(() => {
    delete process.env.GRANITEFLOW_INTERLEAVE;
  });

  test('are held interleaved; readBytes gives row order; matmul, gather and dequantize agree with row order', () => {
    const w = PackedTensor.fromFloats(format, [rows, cols], values);
    expect(w.interleaved).toBe(true);
    const stored = new Uint8Array((w.bytes.dataSync() as Int32Array).buffer, 0, rowOrder.length);
    expect(Buffer.from(stored).equals(Buffer.from(rowOrder))).toBe(false);
    expect(Buffer.from(w.readBytes()).equals(Buffer.from(rowOrder))).toBe(true);
    const want = dequantized(format, rowOrder, rows, cols);
    const x = tf.tensor3d(randomFloats(2 * 3 * cols, 4), [2, 3, cols]);
    const y = packedMatMul(x, w);
    expect(y.shape).toEqual([2, 3, rows]);
    const xs = x.dataSync() as Float32Array;
    const expected = new Float32Array(6 * rows);
    for (let r = 0; r < 6; r++)
      for (let o = 0; o < rows; o++) {
        let acc = 0;
        for (let k = 0; k < cols; k++) acc += xs[r * cols + k] * want[o * cols + k];
        expected[r * rows + o] = acc;
      }
    expectClose(y, Array.from(expected), { atol: (0.05 * cols) / 32 });
    const ids = tf.tensor1d([0, 37, 17, 15, 16], 'int32');
    const rowsOut = packedGather(w, ids).dataSync();
    [0, 37, 17, 15, 16].forEach((r, i) =>
      expect(Array.from(rowsOut.subarray(i * cols, (i + 1) * cols))).toEqual(Array.from(want.subarray(r * cols, (r + 1) * cols))),
    );
    expect(Array.from(w.dequantize().dataSync())).toEqual(Array.from(want));
    tf.dispose([x, y, ids]);
    w.dispose();
  });

  test('fewer than 16 rows, 3-D weights and GRANITEFLOW_INTERLEAVE=0 stay in row order', () => {
    expect(interleavesHere(format, [15, cols])).toBe(false);
    expect(interleavesHere(format, [2, 16, cols])).toBe(false);
    expect(interleavesHere('bf16', [64, cols])).toBe(false);
    process.env.GRANITEFLOW_INTERLEAVE = '0';
    const w = PackedTensor.fromFloats(format, [rows, cols], values);
    expect(w.interleaved).toBe(false);
    w.dispose();
  });

  test('fromBytes leaves caller bytes alone unless mayModify; bytes given interleaved are taken as such', () => {
    const mine = rowOrder.slice();
    const kept = PackedTensor.fromBytes(format, [rows, cols], mine);
    expect(kept.interleaved).toBe(false);
    expect(Buffer.from(mine).equals(Buffer.from(rowOrder))).toBe(true);
    const regrouped = PackedTensor.fromBytes(format, [rows, cols], mine, { mayModify: true });
    expect(regrouped.interleaved).toBe(true);
    expect(Buffer.from(mine).equals(Buffer.from(rowOrder))).toBe(false);
    const again = PackedTensor.fromBytes(format, [rows, cols], mine, { layout: 'interleaved' });
    expect(Buffer.from(again.readBytes()).equals(Buffer.from(rowOrder))).toBe(true);
    expect(() => PackedTensor.fromBytes('bf16', [2, 32], new Uint8Array(128), { layout: 'interleaved' })).toThrow(
      /Only 2-D q8_0 \/ q4_0 weights have an interleaved layout, got bf16 \[2,32\]/,
    );
    [kept, regrouped, again].forEach((t) => t.dispose());
  });

  test('a mapped checkpoint hands out its weights in row order, over the mapping', async () => {
    const ckptDir = path.join(dir, `ckpt-${format}`);
    fs.mkdirSync(ckptDir);
    await writePackedCheckpoint(ckptDir, [{ name: 'w', dtype: format, shape: [rows, cols], bytes: rowOrder }]);
    const ckpt = openMappedCheckpoint(ckptDir);
    const w = ckpt.packedTensor('w');
    expect(w.interleaved).toBe(false);
    expect(ckpt.stats().inPlaceTensors).toBe(1);
    expect(Buffer.from(w.readBytes()).equals(Buffer.from(rowOrder))).toBe(true);
    ckpt.close();
    w.dispose();
  });
});
