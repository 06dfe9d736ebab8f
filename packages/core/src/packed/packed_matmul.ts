import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '../kernels/define_kernel';
import type { FlatArray } from '../kernels/fused_kernel';
import { nativeKernel } from '../native/native_backend';
import { packedRowBytes, type PackedFormat } from './formats';
import { rowOrderBytes } from './interleaved_layout';
import { packedMatMulSimd } from './packed_matmul_simd';
import type { PackedTensor } from './packed_tensor';
import { dequantizeRowsInto } from './quantize';

/** Inputs of the `PackedMatMul` kernel: activations [..., in] and the packed weight's bytes. */
export type PackedMatMulInputs = { x: tf.Tensor; w: tf.Tensor };
/**
 * Attributes of the `PackedMatMul` kernel: the weight's format, checkpoint shape [out, in] and
 * whether its bytes are interleaved ({@link PackedTensor.interleaved}; default row order).
 */
export type PackedMatMulAttrs = { format: PackedFormat; outFeatures: number; inFeatures: number; interleaved?: boolean };

/** The packed bytes of an int32 storage array, without the word padding. */
export function storageBytes(words: FlatArray, byteLength: number): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, byteLength);
}

/** The weight's bytes in row order (a converted copy when interleaved). */
function rowOrderWeight(words: FlatArray, { format, outFeatures, inFeatures, interleaved }: PackedMatMulAttrs): Uint8Array {
  const bytes = storageBytes(words, outFeatures * packedRowBytes(format, inFeatures));
  return rowOrderBytes(format, bytes, outFeatures, inFeatures, interleaved === true);
}

/** The whole packed weight as float32 [out, in], read back from the backend. */
function dequantizedWeight(w: tf.Tensor, attrs: PackedMatMulAttrs): tf.Tensor {
  const { format, outFeatures, inFeatures } = attrs;
  const bytes = rowOrderWeight(w.dataSync() as Int32Array, attrs);
  const values = new Float32Array(outFeatures * inFeatures);
  dequantizeRowsInto(format, bytes, inFeatures, 0, outFeatures, values);
  return tf.tensor2d(values, [outFeatures, inFeatures]);
}

/** x's shape with the last dimension (in) replaced by out. */
function outputShape(x: readonly number[], outFeatures: number): number[] {
  return [...x.slice(0, -1), outFeatures];
}

/**
 * y [..., out] = x [..., in] · Wᵀ for a packed W [out, in]. The reference unpacks the whole weight and
 * multiplies with tfjs (so it runs, and differentiates with respect to x, on every backend). The
 * fused body, on wasm, runs the WebAssembly SIMD kernels of `assembly/packed_matvec.ts` over the
 * packed bytes in the heap; elsewhere, or with SIMD off or unavailable, it unpacks one row at a time
 * into a scratch row in JS. Neither ever holds the float32 weight.
 */
export const PackedMatMul = defineKernel<PackedMatMulInputs, PackedMatMulAttrs>({
  name: 'GraniteflowPackedMatMul',
  inputNames: ['x', 'w'],
  nonDifferentiable: ['w'],
  reference: ({ x, w }, attrs) =>
    tf.tidy(() => {
      const weight = dequantizedWeight(w, attrs);
      const flat = tf.reshape(x, [-1, attrs.inFeatures]);
      return [tf.reshape(tf.matMul(flat, weight, false, true), outputShape(x.shape, attrs.outFeatures))];
    }),
  fused: {
    outputs: ({ x }, { outFeatures }) => [{ shape: outputShape(x.shape, outFeatures), dtype: 'float32' }],
    compute: ({ x, w }, [y], _shapes, attrs) => {
      const { format, outFeatures, inFeatures } = attrs;
      if (!attrs.interleaved && packedMatMulSimd(x, w, y, format, outFeatures, inFeatures)) return;
      const bytes = rowOrderWeight(w, attrs);
      const n = x.length / inFeatures;
      const row = new Float32Array(inFeatures);
      for (let o = 0; o < outFeatures; o++) {
        dequantizeRowsInto(format, bytes, inFeatures, o, 1, row);
        for (let r = 0; r < n; r++) {
          let acc = 0;
          const base = r * inFeatures;
          for (let k = 0; k < inFeatures; k++) acc += x[base + k] * row[k];
          y[r * outFeatures + o] = acc;
        }
      }
    },
  },
  backendKernels: {
    native: nativeKernel<PackedMatMulAttrs>((addon, { x, w }, { format, outFeatures, inFeatures, interleaved }) => {
      const n = x.values.length / inFeatures;
      const y = new Float32Array(n * outFeatures);
      const bytes = storageBytes(w.values, outFeatures * packedRowBytes(format, inFeatures));
      addon.matmul(format, bytes, outFeatures, inFeatures, x.values as Float32Array, n, y, { interleaved: interleaved === true });
      return { shape: outputShape(x.shape, outFeatures), values: y };
    }),
  },
  gradient: 'reference',
});

/**
 * `x [..., in] · Wᵀ` for a packed weight `w` of checkpoint shape [out, in] → [..., out]. Differentiable
 * with respect to `x` (the weight is frozen), so adapters can be trained on a packed base.
 */
export function packedMatMul(x: tf.Tensor, w: PackedTensor): tf.Tensor {
  if (w.shape.length !== 2) throw new RangeError(`packedMatMul expects a 2-D packed weight [out, in], got [${w.shape}].`);
  const [outFeatures, inFeatures] = w.shape;
  const last = x.shape[x.shape.length - 1];
  if (x.dtype !== 'float32') throw new TypeError(`packedMatMul expects float32 activations, got ${x.dtype}.`);
  if (last !== inFeatures) {
    throw new RangeError(`packedMatMul: activations [${x.shape}] do not end in the weight's ${inFeatures} input features.`);
  }
  // One kernel for any rank (no reshapes around it: a decode step makes ~170 of these calls).
  const [y] = PackedMatMul.run({ x, w: w.bytes }, { format: w.format, outFeatures, inFeatures, interleaved: w.interleaved });
  return y;
}
