import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '../kernels/define_kernel';
import type { FlatArray } from '../kernels/fused_kernel';
import { nativeKernel } from '../native/native_backend';
import { packedRowBytes, type PackedFormat } from './formats';
import { rowOrderBytes } from './interleaved_layout';
import { storageBytes } from './packed_matmul';
import type { PackedTensor } from './packed_tensor';
import { dequantizeRowsInto } from './quantize';

/** Inputs of the `PackedGather` kernel: the packed table's bytes and the row ids. */
export type PackedGatherInputs = { w: tf.Tensor; ids: tf.Tensor };
/** Attributes of the `PackedGather` kernel: the table's format, shape [rows, cols] and layout. */
export type PackedGatherAttrs = { format: PackedFormat; rows: number; cols: number; interleaved?: boolean };

/** Throws naming the first id that is not a row of a table of `rows` rows. */
function checkRowIds(ids: ArrayLike<number>, rows: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(id >= 0 && id < rows)) throw new RangeError(`Row id ${id} is outside the packed table [0, ${rows}).`);
  }
}

function gatherRowsInto(
  words: FlatArray,
  ids: ArrayLike<number>,
  out: Float32Array,
  { format, rows, cols, interleaved }: PackedGatherAttrs,
): void {
  checkRowIds(ids, rows);
  const bytes = rowOrderBytes(format, storageBytes(words, rows * packedRowBytes(format, cols)), rows, cols, interleaved === true);
  for (let i = 0; i < ids.length; i++) dequantizeRowsInto(format, bytes, cols, ids[i], 1, out, i * cols);
}

/** Rows of a packed table, unpacked to float32: the embedding lookup of a packed embedding. */
export const PackedGather = defineKernel<PackedGatherInputs, PackedGatherAttrs>({
  name: 'GraniteflowPackedGather',
  inputNames: ['w', 'ids'],
  nonDifferentiable: ['w', 'ids'],
  reference: ({ w, ids }, attrs) => {
    const ids32 = ids.dataSync() as Int32Array;
    const out = new Float32Array(ids32.length * attrs.cols);
    gatherRowsInto(w.dataSync() as Int32Array, ids32, out, attrs);
    return [tf.tensor2d(out, [ids32.length, attrs.cols])];
  },
  fused: {
    outputs: ({ ids }, { cols }) => [{ shape: [ids.shape[0], cols], dtype: 'float32' }],
    compute: ({ w, ids }, [out], _shapes, attrs) => {
      gatherRowsInto(w, ids, out as Float32Array, attrs);
    },
  },
  backendKernels: {
    native: nativeKernel<PackedGatherAttrs>((addon, { w, ids }, { format, rows, cols, interleaved }) => {
      const rowIds = ids.values as Int32Array;
      checkRowIds(rowIds, rows);
      const out = new Float32Array(rowIds.length * cols);
      const bytes = storageBytes(w.values, rows * packedRowBytes(format, cols));
      addon.dequantizeRows(format, bytes, cols, rowIds, out, { interleaved: interleaved === true });
      return { shape: [rowIds.length, cols], values: out };
    }),
  },
});

/** Rows `ids` [...] (int32) of a packed table [rows, cols] → float32 [..., cols]. */
export function packedGather(table: PackedTensor, ids: tf.Tensor): tf.Tensor {
  if (table.shape.length !== 2) throw new RangeError(`packedGather expects a 2-D packed table, got [${table.shape}].`);
  if (ids.dtype !== 'int32') throw new TypeError(`packedGather expects int32 ids, got ${ids.dtype}.`);
  const [rows, cols] = table.shape;
  return tf.tidy(() => {
    const flat = tf.reshape(ids, [-1]);
    const [out] = PackedGather.run({ w: table.bytes, ids: flat }, { format: table.format, rows, cols, interleaved: table.interleaved });
    return tf.reshape(out, [...ids.shape, cols]);
  });
}
