import * as tf from '@tensorflow/tfjs-core';
import { dequantizeRowsInto, packedRowBytes, type PackedFormat } from '@graniteflow/core';
import type { MoePackedExpertsAttrs } from '../kernel_names';
import { groupedExpertsFrom, takeRows } from './grouped_experts';

/**
 * Expert `expert`'s `rows` × `cols` weight, unpacked to float32, from the int32 storage of a packed
 * [E, rows, cols] weight: only the words holding that expert's contiguous rows leave the backend.
 */
export function unpackExpert(storage: tf.Tensor, format: PackedFormat, expert: number, rows: number, cols: number): tf.Tensor {
  const expertBytes = rows * packedRowBytes(format, cols);
  const first = expert * expertBytes;
  const firstWord = Math.floor(first / 4);
  const words = tf.tidy(() => takeRows(storage, firstWord, Math.ceil((first + expertBytes) / 4) - firstWord));
  const data = words.dataSync() as Int32Array;
  words.dispose();
  const bytes = new Uint8Array(data.buffer, data.byteOffset + (first - 4 * firstWord), expertBytes);
  const values = new Float32Array(rows * cols);
  dequantizeRowsInto(format, bytes, cols, 0, rows, values);
  return tf.tensor2d(values, [rows, cols]);
}

/**
 * The reference of the packed routed experts: the sorted-dispatch path (`groupedExpertsFrom`)
 * with each routed expert's weights unpacked in JavaScript (never the unrouted ones), then stock
 * tfjs matMuls. Runs on every backend and differentiates with respect to `x` and `weights` by
 * autodiff (the unpacked expert weights are constants: the packed base is frozen).
 */
export function packedExpertsReference(
  x: tf.Tensor,
  inputLinear: tf.Tensor,
  outputLinear: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
  { inputFormat, outputFormat, numExperts, hiddenSize: h, intermediateSize: i }: MoePackedExpertsAttrs,
): tf.Tensor {
  return groupedExpertsFrom(x, indices, weights, numExperts, (ex) => [
    unpackExpert(inputLinear, inputFormat, ex, 2 * i, h),
    unpackExpert(outputLinear, outputFormat, ex, h, i),
  ]);
}
