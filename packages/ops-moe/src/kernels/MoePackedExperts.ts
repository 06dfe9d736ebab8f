import {
  countSimdCall,
  defineKernel,
  heapScratch,
  nativeKernel,
  packedRowBytes,
  reserveHeapScratch,
  simdKernels,
  type FlatArray,
  type NativeAddon,
} from '@graniteflow/core';
import { MoePackedExperts, type MoePackedExpertsAttrs, type MoePackedExpertsInputs } from '../kernel_names';
import { packedExpertsReference } from '../ops/packed_experts_reference';
import {
  groupBufferFloats,
  groupBuffersIn,
  jsPackedMatMul,
  packedExpertsImpl,
  type PackedExpertsDims,
  type PackedRowsMatMul,
} from './MoePackedExperts_impl';

/**
 * Most tokens of one expert taken together by the cpu and wasm bodies: enough to spread the cost of
 * reading a weight row over many products, few enough that the group's rows stay in cache.
 */
const GROUP_ROWS = 64;

/**
 * The functions of core's WebAssembly SIMD packed matmul module (family `packed_matvec`, sources in
 * `@graniteflow/core`'s `assembly/packed_matvec.ts`) used here. Every pointer is a heap byte address.
 */
interface PackedMatvecKernels {
  quantize_rows(x: number, n: number, k: number, qmax: number, scales: number, quants: number): void;
  matmul_q8_0(w: number, out: number, k: number, scales: number, quants: number, n: number, y: number): void;
  matmul_q4_0(w: number, out: number, k: number, scales: number, quants: number, n: number, y: number): void;
  matmul_bf16(w: number, out: number, k: number, x: number, n: number, y: number): void;
}
const PACKED_MATVEC = 'packed_matvec';
/**
 * Activations are rounded to int16 per 32-block before the integer block dot products, as core's
 * PackedMatMul does on wasm: |x − x̂| ≤ amax / 65534 per block, 258× finer than llama.cpp's int8.
 */
const ACTIVATION_QMAX = 32767;

const align16 = (n: number) => (n + 15) & ~15;

/** Bytes of quantized activations for `rows` rows of `cols`: 16-aligned scales, then int16 quants. */
function activationLayout(rows: number, cols: number): { quantsAt: number; bytes: number } {
  const quantsAt = align16(4 * rows * Math.ceil(cols / 32));
  return { quantsAt, bytes: quantsAt + 2 * rows * cols };
}

/** Heap scratch (floats) the wasm body needs: one group's buffers and its quantized activations. */
function heapScratchFloats(h: number, i: number): number {
  return groupBufferFloats(GROUP_ROWS, h, i) + Math.ceil((activationLayout(GROUP_ROWS, Math.max(h, i)).bytes + 15) / 4);
}

/**
 * Reserves the wasm heap scratch of the packed experts kernel for hidden size `h` and intermediate
 * size `i` (call before running it: reserving may grow the heap, which must not happen under the
 * kernel's views). Without it the kernel still runs, in plain JavaScript.
 */
export function reservePackedExpertsScratch(h: number, i: number): void {
  reserveHeapScratch(heapScratchFloats(h, i));
}

/**
 * A {@link PackedRowsMatMul} through core's SIMD kernels, for arrays in the wasm heap: q8_0 / q4_0
 * quantize the activation rows into `activations` (heap scratch) and take integer block dot
 * products; bf16 is widened to f32 and multiplied with the float activations.
 */
function simdPackedMatMul(kernels: PackedMatvecKernels, activations: Float32Array): PackedRowsMatMul {
  return (format, w, outFeatures, inFeatures, x, nRows, y) => {
    if (format === 'bf16') {
      kernels.matmul_bf16(w.byteOffset, outFeatures, inFeatures, x.byteOffset, nRows, y.byteOffset);
    } else {
      const scales = align16(activations.byteOffset);
      const quants = scales + activationLayout(nRows, inFeatures).quantsAt;
      kernels.quantize_rows(x.byteOffset, nRows, inFeatures, ACTIVATION_QMAX, scales, quants);
      const matmul = format === 'q8_0' ? kernels.matmul_q8_0 : kernels.matmul_q4_0;
      matmul(w.byteOffset, outFeatures, inFeatures, scales, quants, nRows, y.byteOffset);
    }
    countSimdCall(`${MoePackedExperts}/${format}`);
  };
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
function weightBytes({
  inputFormat,
  outputFormat,
  numExperts: e,
  hiddenSize: h,
  intermediateSize: i,
}: MoePackedExpertsAttrs): [number, number] {
  return [e * 2 * i * packedRowBytes(inputFormat, h), e * h * packedRowBytes(outputFormat, i)];
}

/** Formats the addon's one-call `moeExperts` takes (bf16 experts go matrix by matrix). */
const ONE_CALL_FORMATS = new Set(['q8_0', 'q4_0']);

/**
 * The `native` backend's body. q8_0 / q4_0 experts: one `addon.moeExperts` call (a decode token's
 * experts share the threads in one pass per projection, with no JavaScript between them). Others,
 * or an addon without it: per non-empty expert, one `addon.matmul` over that expert's rows of each
 * weight (subarrays of the packed bytes, no copy) with its tokens gathered into one block.
 */
export function nativePackedExperts(
  addon: Pick<NativeAddon, 'matmul' | 'moeExperts'>,
  { x, inputLinear, outputLinear, indices, weights }: Record<string, { values: Float32Array | Int32Array; shape: number[] }>,
  attrs: MoePackedExpertsAttrs,
): { shape: number[]; values: Float32Array } {
  const dims = dimsOf({ x: x.shape, indices: indices.shape }, attrs);
  const [inputBytes, outputBytes] = weightBytes(attrs);
  const y = new Float32Array(dims.n * dims.h);
  if (addon.moeExperts && ONE_CALL_FORMATS.has(attrs.inputFormat) && ONE_CALL_FORMATS.has(attrs.outputFormat)) {
    addon.moeExperts(
      attrs.inputFormat,
      bytesOf(inputLinear.values, inputBytes),
      attrs.outputFormat,
      bytesOf(outputLinear.values, outputBytes),
      x.values as Float32Array,
      { n: dims.n, h: dims.h, inter: dims.i, experts: dims.e, k: dims.k },
      indices.values as Int32Array,
      weights.values as Float32Array,
      y,
    );
    return { shape: x.shape, values: y };
  }
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
 * same grouping, each routed expert's rows read from the packed bytes — on wasm by core's
 * WebAssembly SIMD packed matmul (activations rounded to int16 per block, as core's PackedMatMul
 * does), in JavaScript elsewhere or with SIMD off (one token: a dot product per packed row; a group:
 * each row unpacked once for the group). `native`: each group through `@graniteflow/native`'s
 * packed matmul when it loads. Gradient with respect to `x` and the routing weights by autodiff of
 * the reference; the packed weights are frozen.
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
      // SIMD needs every array in the heap, the group buffers included: the reserved scratch.
      const simd = simdKernels<PackedMatvecKernels>(PACKED_MATVEC, [x, inputLinear, outputLinear, y]);
      const space = simd === null ? null : heapScratch(simd.heap, heapScratchFloats(dims.h, dims.i));
      if (simd !== null && space !== null) {
        const buffers = groupBuffersIn(space, GROUP_ROWS, dims.h, dims.i);
        const activations = space.subarray(groupBufferFloats(GROUP_ROWS, dims.h, dims.i));
        packedExpertsImpl(...args, simdPackedMatMul(simd.exports, activations), GROUP_ROWS, buffers);
      } else {
        packedExpertsImpl(...args, jsPackedMatMul, GROUP_ROWS);
      }
    },
  },
  backendKernels: { native: nativeKernel<MoePackedExpertsAttrs>(nativePackedExperts) },
  gradient: 'reference',
});
