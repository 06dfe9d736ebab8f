import * as tf from '@tensorflow/tfjs-core';
import { decodeFloatsInto, floatToBf16, floatToHalf, Parameter, tensorFromWriter } from '../src';
import { describeBackends, expectClose, expectNoTensorLeak } from '../src/testing';

const ROWS = 3;
const COLS = 70; // wider than one 32-column tile
const values = Float32Array.from({ length: ROWS * COLS }, (_, i) => (i % 17) * 0.25 - 2);
const transposed = Float32Array.from({ length: ROWS * COLS }, (_, i) => values[(i % ROWS) * COLS + Math.floor(i / ROWS)]);

function bytesOf(dtype: 'F32' | 'BF16' | 'F16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.slice().buffer);
  const halves = dtype === 'BF16' ? floatToBf16(values) : Uint16Array.from(values, (v) => floatToHalf(v));
  return new Uint8Array(halves.buffer);
}

describe('decodeFloatsInto', () => {
  it.each(['F32', 'BF16', 'F16'] as const)('%s decodes as is and transposed in one pass', (dtype) => {
    // The test values are exact in all three dtypes.
    const plain = new Float32Array(values.length);
    decodeFloatsInto(dtype, bytesOf(dtype), plain);
    expect(Array.from(plain)).toEqual(Array.from(values));
    const t = new Float32Array(values.length);
    decodeFloatsInto(dtype, bytesOf(dtype), t, [ROWS, COLS]);
    expect(Array.from(t)).toEqual(Array.from(transposed));
  });

  it('reads bytes that start at an odd offset', () => {
    const padded = new Uint8Array(bytesOf('BF16').length + 1);
    padded.set(bytesOf('BF16'), 1);
    const out = new Float32Array(values.length);
    decodeFloatsInto('BF16', padded.subarray(1), out);
    expect(Array.from(out)).toEqual(Array.from(values));
  });
});

describeBackends('tensorFromWriter', () => {
  it('writes straight into backend memory and tracks the tensor like any other', async () => {
    await expectNoTensorLeak(() => {
      const t = tensorFromWriter([2, 3], (out) => out.set([1, 2, 3, 4, 5, 6]));
      const total = tf.sum(t);
      expectClose(total, [21]);
      tf.dispose([t, total]);
    });
    expect(() =>
      tensorFromWriter([2], () => {
        throw new Error('bad bytes');
      }),
    ).toThrow('bad bytes');
  });

  it('Parameter.writeValues fills the storage layout', () => {
    const p = new Parameter([ROWS, COLS], 0, { layout: 'transposed' });
    p.writeValues((out) => decodeFloatsInto('F32', bytesOf('F32'), out, [ROWS, COLS]));
    expect(p.value.shape).toEqual([COLS, ROWS]);
    expectClose(p.checkpointValue(), values);
    p.dispose();
  });
});
