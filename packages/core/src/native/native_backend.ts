/**
 * The `native` tfjs backend: the cpu backend's kernels registered again under another name, so
 * every stock op works and tensors live in ordinary memory (no 4 GiB heap ceiling), with the hot
 * kernels replaced by `@graniteflow/native`'s multi-threaded SIMD ones.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PRESENT_INPUTS_ATTR, presentInputNames } from '../kernels/present_inputs';
import { nativeAddon, type NativeAddon } from './native_addon';

export const NATIVE_BACKEND = 'native';

/** What the kernels here need of `MathBackendCPU`. */
interface CpuBackendLike {
  data: { get(dataId: object): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}

/**
 * BatchMatMul through the native GEMM. Batch dimensions broadcast as the cpu kernel does (each
 * operand's flattened batch index is the output's modulo its own batch size); anything but float32
 * goes to the cpu kernel.
 */
function batchMatMulKernel(addon: NativeAddon, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    const backend = args.backend as unknown as CpuBackendLike;
    const ra = a.shape.length;
    const rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    if (k !== kb) {
      throw new Error(
        `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
          `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
      );
    }
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    const batch = Math.max(batchA, batchB);
    const av = backend.data.get(a.dataId).values as Float32Array;
    const bv = backend.data.get(b.dataId).values as Float32Array;
    const out = new Float32Array(batch * m * n);
    if ((batchA === batch || batchA === 1) && (batchB === batch || batchB === 1)) {
      const strideA = batchA === 1 ? 0 : m * k;
      const strideB = batchB === 1 ? 0 : k * n;
      addon.gemmF32(av, bv, out, m, n, k, transposeA, transposeB, { batch, strideA, strideB, strideC: m * n });
    } else {
      for (let i = 0; i < batch; i++) {
        const ai = (i % batchA) * m * k;
        const bi = (i % batchB) * k * n;
        const c = out.subarray(i * m * n, (i + 1) * m * n);
        addon.gemmF32(av.subarray(ai, ai + m * k), bv.subarray(bi, bi + k * n), c, m, n, k, transposeA, transposeB);
      }
    }
    return backend.makeTensorInfo([...outer, m, n], 'float32', out);
  };
}

/** Kernels the native backend runs natively instead of through the cpu backend's JavaScript. */
function nativeOverrides(addon: NativeAddon): Map<string, (cpu: tf.KernelFunc) => tf.KernelFunc> {
  return new Map([[tf.BatchMatMul, (cpu: tf.KernelFunc) => batchMatMulKernel(addon, cpu)]]);
}

/**
 * Registers the `native` backend with tfjs when `@graniteflow/native` loads (idempotent). Returns
 * false, registering nothing, when it does not (see `nativeUnavailableReason`).
 */
export function registerNativeBackend(): boolean {
  if (tf.findBackendFactory(NATIVE_BACKEND) != null) return true;
  const addon = nativeAddon();
  if (addon === null) return false;
  // The cpu backend's package registers its kernels for "cpu" on load; they are copied from there.
  const { MathBackendCPU } = require('@tensorflow/tfjs-backend-cpu') as { MathBackendCPU: new () => tf.KernelBackend };
  const overrides = nativeOverrides(addon);
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (tf.getKernel(config.kernelName, NATIVE_BACKEND) != null) continue;
    const override = overrides.get(config.kernelName);
    tf.registerKernel({
      ...config,
      backendName: NATIVE_BACKEND,
      kernelFunc: override ? override(config.kernelFunc) : config.kernelFunc,
    });
  }
  // Priority above wasm (2) and cpu (1): tfjs picks it when nothing is chosen explicitly.
  tf.registerBackend(NATIVE_BACKEND, () => new MathBackendCPU(), 3);
  return true;
}

/** One float32 output of a {@link nativeKernel}. */
export type NativeOutput = { shape: number[]; values: Float32Array };

/**
 * A kernel of the `native` backend computed by `@graniteflow/native`, for
 * `KernelDefinition.backendKernels`: `run` gets the addon, the inputs' arrays and shapes (absent
 * optional inputs left out), and the attrs, and returns the float32 output with its shape, or a
 * list of them. Null when the addon is not loaded.
 */
export function nativeKernel<A>(
  run: (
    addon: NativeAddon,
    inputs: Record<string, { values: Float32Array | Int32Array; shape: number[] }>,
    attrs: A,
  ) => NativeOutput | NativeOutput[],
): () => tf.KernelFunc | null {
  return () => {
    const addon = nativeAddon();
    if (addon === null) return null;
    return ({ inputs, backend, attrs }) => {
      const cpu = backend as unknown as CpuBackendLike;
      const named = inputs as Record<string, tf.TensorInfo>;
      const present = attrs !== undefined && PRESENT_INPUTS_ATTR in attrs ? presentInputNames(attrs) : Object.keys(named);
      const arrays: Record<string, { values: Float32Array | Int32Array; shape: number[] }> = {};
      for (const name of present) {
        const info = named[name];
        arrays[name] = { values: cpu.data.get(info.dataId).values as Float32Array | Int32Array, shape: info.shape };
      }
      const out = run(addon, arrays, attrs as unknown as A);
      if (Array.isArray(out)) return out.map((o) => cpu.makeTensorInfo(o.shape, 'float32', o.values));
      return cpu.makeTensorInfo(out.shape, 'float32', out.values);
    };
  };
}
