import { defineKernel, nativeKernel, packedRowBytes, type FlatArray, type NativeAddon } from '@graniteflow/core';
import { MoePackedExperts, type MoePackedExpertsAttrs, type MoePackedExpertsInputs } from '../kernel_names';
import { packedExpertsReference } from '../ops/packed_experts_reference';
import {
  groupBufferFloats,
  groupBuffersIn,
  jsPackedMatMul,
  packedExpertsImpl,
  simdPackedMatMul,
  type PackedExpertsDims,
} from './MoePackedExperts_impl';
import { wasmSimdHeap } from './simd/wasm_heap';

/**
 * Most tokens of one expert taken together by the cpu and wasm bodies: enough to spread the cost of
 * unpacking a weight row over many products, few enough that the group's rows stay in cache.
 */
const GROUP_ROWS = 64;
/** Weight rows unpacked at a time for the SIMD products on wasm (a block that stays in cache). */
const SIMD_BLOCK_ROWS = 16;

/** Heap scratch (floats) the wasm body needs: one group's buffers and a block of unpacked rows. */
function heapScratchFloats(h: number, i: number): number {
  return groupBufferFloats(GROUP_ROWS, h, i) + SIMD_BLOCK_ROWS * Math.max(h, i);
}

/**
 * Reserves the wasm heap scratch of the packed experts kernel for hidden size `h` and intermediate
 * size `i` (call before running it: reserving may grow the heap, which must not happen under the
 * kernel's views). Without it the kernel still runs, with its products in plain JavaScript.
 */
export function reservePackedExpertsScratch(h: number, i: number): void {
  wasmSimdHeap()?.reserve(heapScratchFloats(h, i));
}

/** The packed bytes of an int32 storage array, without the word padding. */
function bytesOf(words: FlatArray, byteLength: number): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, byteLength);
}

function dimsOf(shapes: { x: number[]; indices: number[] }, attrs: MoePackedExpertsAttrs): PackedExpertsDims {
  const [n, h] = shapes.x;
  return { n, h, i: attrs.intermediateSize, k: shapes.indices[1], e: attrs.numExperts };
}

/** Bytes of the packed [E, 2I, H] and [E, H, I] weights. */
function weightBytes({ inputFormat, outputFormat, numExperts: e, hiddenSize: h, intermediateSize: i }: MoePackedExpertsAttrs): [number, number] {
  return [e * 2 * i * packedRowBytes(inputFormat, h), e * h * packedRowBytes(outputFormat, i)];
}

/**
 * The `native` backend's body: per non-empty expert, one `addon.matmul` over that expert's rows of
 * each weight (subarrays of the packed bytes, no copy) with its tokens gathered into one block.
 */
export function nativePackedExperts(
  addon: Pick<NativeAddon, 'matmul'>,
  { x, inputLinear, outputLinear, indices, weights }: Record<string, { values: Float32Array | Int32Array; shape: number[] }>,
  attrs: MoePackedExpertsAttrs,
): { shape: number[]; values: Float32Array } {
  const dims = dimsOf({ x: x.shape, indices: indices.shape }, attrs);
  const [inputBytes, outputBytes] = weightBytes(attrs);
  const y = new Float32Array(dims.n * dims.h);
  packedExpertsImpl(
    x.values as Float32Array,
    bytesOf(inputLinear.values, inputBytes),
    bytesOf(outputLinear.values, outputBytes),
    indices.values as Int32Array,
    weights.values as Float32Array,
    y,
    dims,
    attrs,
    (format, w, outFeatures, inFeatures, xs, nRows, ys) => addon.matmul(format, w, outFeatures, inFeatures, xs, nRows, ys),
  );
  return { shape: x.shape, values: y };
}

/**
 * Routed experts over packed expert weights ({@link MoePackedExperts}). Reference: the grouped path
 * with only the routed experts unpacked in JavaScript. Fused (cpu, wasm, in place on the heap): the
 * same grouping with each routed expert's rows read from the packed bytes (one token: a dot product
 * per row; a group: each row unpacked once for the group, and on wasm the group's products by the
 * WebAssembly SIMD matrix-vector routine). `native`: the expert groups
 * through `@graniteflow/native`'s packed matmul when it loads. Gradient with respect to `x` and the
 * routing weights by autodiff of the reference; the packed weights are frozen.
 */
export const moePackedExpertsKernel = defineKernel<MoePackedExpertsInputs, MoePackedExpertsAttrs>({
  name: MoePackedExperts,
  inputNames: ['x', 'inputLinear', 'outputLinear', 'indices', 'weights'],
  nonDifferentiable: ['inputLinear', 'outputLinear', 'indices'],
  reference: ({ x, inputLinear, outputLinear, indices, weights }, attrs) => [
    packedExpertsReference(x, inputLinear, outputLinear, indices, weights, attrs),
  ],
  fused: {
    outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
    compute: ({ x, inputLinear, outputLinear, indices, weights }, [y], shapes, attrs) => {
      const [inputBytes, outputBytes] = weightBytes(attrs);
      const dims = dimsOf(shapes, attrs);
      const args = [
        x as Float32Array,
        bytesOf(inputLinear, inputBytes),
        bytesOf(outputLinear, outputBytes),
        indices as Int32Array,
        weights as Float32Array,
        y as Float32Array,
        dims,
        attrs,
      ] as const;
      const heap = wasmSimdHeap();
      const floats = heapScratchFloats(dims.h, dims.i);
      const onHeap = heap !== null && [x, inputLinear, outputLinear, y].every((a) => heap.owns(a));
      if (heap !== null && onHeap && heap.scratchFloats >= floats) {
        const space = heap.scratch(floats);
        const buffers = groupBuffersIn(space, GROUP_ROWS, dims.h, dims.i);
        const rowBlock = space.subarray(groupBufferFloats(GROUP_ROWS, dims.h, dims.i));
        packedExpertsImpl(...args, simdPackedMatMul(heap, rowBlock), GROUP_ROWS, buffers);
      } else {
        packedExpertsImpl(...args, jsPackedMatMul, GROUP_ROWS);
      }
    },
  },
  backendKernels: { native: nativeKernel<MoePackedExpertsAttrs>(nativePackedExperts) },
  gradient: 'reference',
});
