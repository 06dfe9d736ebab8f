import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { FlatArray } from './fused_kernel';

/** What the kernel needs of the wasm backend (`BackendWasm`). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): FlatArray;
}

/**
 * `UnsortedSegmentSum` for the wasm backend, which tfjs-backend-wasm 4.22 lacks: it is the
 * gradient of `tf.gather`, so without it nothing with an embedding lookup trains on wasm.
 * `out[segmentIds[r], ...] += x[r, ...]` over the rows `r` of `x` (as many as `segmentIds` has
 * elements); ids outside [0, numSegments) are dropped, as TensorFlow does. Works on the heap in place.
 */
const unsortedSegmentSumWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  const wasm = backend as unknown as WasmBackendLike;
  const idRank = segmentIds.shape.length;
  if (segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new RangeError(`UnsortedSegmentSum: segmentIds [${segmentIds.shape}] must be a prefix of x's shape [${x.shape}].`);
  }
  const inner = x.shape.slice(idRank);
  const width = inner.reduce((a, b) => a * b, 1);
  const out = wasm.makeOutput([numSegments, ...inner], x.dtype);
  // Views only after every allocation: an allocation may grow the heap and detach earlier views.
  const xs = wasm.typedArrayFromHeap(x);
  const ids = wasm.typedArrayFromHeap(segmentIds);
  const sums = wasm.typedArrayFromHeap(out);
  sums.fill(0);
  for (let r = 0; r < ids.length; r++) {
    const segment = ids[r];
    if (segment < 0 || segment >= numSegments) continue;
    const from = r * width;
    const to = segment * width;
    for (let j = 0; j < width; j++) sums[to + j] += xs[from + j];
  }
  return out;
};

/** Registers the kernels the wasm backend needs for training and lacks (idempotent). */
export function registerWasmTrainingKernels(): void {
  if (tf.getKernel(tf.UnsortedSegmentSum, 'wasm') == null) {
    tf.registerKernel({ kernelName: tf.UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm });
  }
}
