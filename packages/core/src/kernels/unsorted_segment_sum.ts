import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { CpuBackendLike, WasmBackendLike } from './backend_adapters';
import type { FlatArray } from './fused_kernel';
import { countSimdCall } from './simd_module';

/** The fast-path counter (`simdCounters()`) both one-pass kernels bump: tests prove they ran. */
export const SEGMENT_SUM_COUNTER = 'UnsortedSegmentSum/one-pass';

interface SegmentSumArgs {
  x: TensorInfo;
  segmentIds: TensorInfo;
  numSegments: number;
  /** Elements per row of x (the product of x's dims after segmentIds' rank). */
  width: number;
  /** The output's shape: [numSegments, ...x's dims after segmentIds' rank]. */
  outShape: number[];
}

function segmentSumArgs({ inputs, attrs }: Parameters<KernelFunc>[0]): SegmentSumArgs {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const numSegments = (attrs as unknown as { numSegments: number }).numSegments;
  if (segmentIds.shape.some((d, i) => d !== x.shape[i])) {
    throw new RangeError(`UnsortedSegmentSum: segmentIds [${segmentIds.shape}] must be a prefix of x's shape [${x.shape}].`);
  }
  const inner = x.shape.slice(segmentIds.shape.length);
  return { x, segmentIds, numSegments, width: inner.reduce((a, b) => a * b, 1), outShape: [numSegments, ...inner] };
}

/**
 * `sums[ids[r], ...] += xs[r, ...]` over the rows r of xs; ids outside [0, numSegments) are
 * dropped, as TensorFlow does. `sums` must start at zero. One pass over x: O(rows · width).
 */
function scatterAddRows(xs: FlatArray, ids: FlatArray, numSegments: number, width: number, sums: FlatArray): void {
  countSimdCall(SEGMENT_SUM_COUNTER);
  for (let r = 0; r < ids.length; r++) {
    const segment = ids[r];
    if (segment < 0 || segment >= numSegments) continue;
    const from = r * width;
    const to = segment * width;
    for (let j = 0; j < width; j++) sums[to + j] += xs[from + j];
  }
}

/**
 * `UnsortedSegmentSum` for the wasm backend, which tfjs-backend-wasm 4.22 lacks: it is the
 * gradient of `tf.gather`, so without it nothing with an embedding lookup trains on wasm. Works on
 * the heap in place.
 */
const unsortedSegmentSumWasm: KernelFunc = (args) => {
  const { x, segmentIds, numSegments, width, outShape } = segmentSumArgs(args);
  const wasm = args.backend as unknown as WasmBackendLike;
  const out = wasm.makeOutput(outShape, x.dtype);
  // Views only after every allocation: an allocation may grow the heap and detach earlier views.
  const sums = wasm.typedArrayFromHeap(out);
  sums.fill(0);
  scatterAddRows(wasm.typedArrayFromHeap(x), wasm.typedArrayFromHeap(segmentIds), numSegments, width, sums);
  return out;
};

/**
 * `UnsortedSegmentSum` for the cpu and native backends. tfjs-backend-cpu's own builds a mask per
 * segment and multiplies it with all of x, O(numSegments · rows · width): the embedding gradient
 * of a 2,048-token vocabulary over 128 tokens took 11 s of a 15 s training step; this is one pass.
 */
const unsortedSegmentSumCpu: KernelFunc = (args) => {
  const { x, segmentIds, numSegments, width, outShape } = segmentSumArgs(args);
  const cpu = args.backend as unknown as CpuBackendLike;
  const sums = x.dtype === 'int32' ? new Int32Array(numSegments * width) : new Float32Array(numSegments * width);
  const values = (t: TensorInfo) => cpu.data.get(t.dataId).values as FlatArray;
  scatterAddRows(values(x), values(segmentIds), numSegments, width, sums);
  return cpu.makeTensorInfo(outShape, x.dtype, sums);
};

/** The cpu-backend kernel, for the native backend's copy of cpu's kernels. */
export const unsortedSegmentSumCpuKernel: KernelFunc = unsortedSegmentSumCpu;

/**
 * Registers the one-pass `UnsortedSegmentSum` for wasm (which lacks it) and cpu (whose own is
 * quadratic), idempotently: training through an embedding then works, and in time, on both.
 */
export function registerTrainingKernels(): void {
  if (tf.getKernel(tf.UnsortedSegmentSum, 'wasm') == null) {
    tf.registerKernel({ kernelName: tf.UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm });
  }
  // Replaces tfjs-backend-cpu's kernel, so that package must have registered its kernels already.
  const cpuKernel = tf.getKernel(tf.UnsortedSegmentSum, 'cpu');
  if (cpuKernel != null && cpuKernel.kernelFunc !== unsortedSegmentSumCpu) {
    tf.unregisterKernel(tf.UnsortedSegmentSum, 'cpu');
    tf.registerKernel({ kernelName: tf.UnsortedSegmentSum, backendName: 'cpu', kernelFunc: unsortedSegmentSumCpu });
  }
}
