import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { countSimdCall } from './simd_module';

/** Counter name (see `simdCounters`) of matmuls that took the explicit-transpose path. */
export const TRANSPOSED_MATMUL_COUNTER = 'BatchMatMul/explicit-transpose';

const WRAPPED = Symbol('graniteflow.transposedMatMul');

/**
 * Makes tfjs-backend-wasm's `BatchMatMul` transpose a transposed operand explicitly, then multiply
 * plainly. Its own transposed-operand path re-packs the operand on every call and ran 8–12×
 * slower (a [256, 1096] · [1096, 256]ᵀ product: 78 ms against 6.6 ms): every matmul gradient
 * (`dx = dy·Wᵀ`, `dW = xᵀ·dy`) takes that path, so training on wasm spent most of its time there.
 * Idempotent; returns false while the wasm backend's kernels are not registered yet.
 */
export function registerWasmTransposedMatMul(): boolean {
  const original = tf.getKernel(tf.BatchMatMul, 'wasm');
  const transpose = tf.getKernel(tf.Transpose, 'wasm');
  if (original === undefined || transpose === undefined) return false;
  if ((original.kernelFunc as unknown as Record<symbol, boolean>)[WRAPPED]) return true;
  const plain = original.kernelFunc;
  const kernelFunc: KernelFunc = (args) => {
    const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (!transposeA && !transposeB) return plain(args);
    countSimdCall(TRANSPOSED_MATMUL_COUNTER);
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const made: TensorInfo[] = [];
    const flipped = (t: TensorInfo): TensorInfo => {
      const perm = t.shape.map((_, i) => i);
      [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
      const out = transpose.kernelFunc({
        inputs: { x: t },
        attrs: { perm } as unknown as tf.NamedAttrMap,
        backend: args.backend,
      }) as TensorInfo;
      made.push(out);
      return out;
    };
    try {
      return plain({
        ...args,
        inputs: { a: transposeA ? flipped(a) : a, b: transposeB ? flipped(b) : b },
        attrs: { ...args.attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const t of made) (args.backend as unknown as tf.KernelBackend).disposeData(t.dataId);
    }
  };
  (kernelFunc as unknown as Record<symbol, boolean>)[WRAPPED] = true;
  tf.unregisterKernel(tf.BatchMatMul, 'wasm');
  tf.registerKernel({ ...original, kernelFunc });
  return true;
}
