/**
 * The `native` tfjs backend: the cpu backend's kernels registered again under another name, so
 * every stock op works and tensors live in ordinary memory (no 4 GiB heap ceiling), with the hot
 * kernels replaced by `@graniteflow/native`'s multi-threaded SIMD ones.
 */
import * as tf from '@tensorflow/tfjs-core';
import { valuesOfDtype } from '../kernels/backend_adapters';
import { PRESENT_INPUTS_ATTR, presentInputNames } from '../kernels/present_inputs';
import { unsortedSegmentSumCpuKernel } from '../kernels/unsorted_segment_sum';
import { padKernel, sliceKernel } from './block_copy_kernels';
import { nativeAddon, type NativeAddon } from './native_addon';

export const NATIVE_BACKEND = 'native';

/** What the kernels here need of `MathBackendCPU`. */
interface CpuBackendLike {
  data: { get(dataId: object): { values: unknown; refCount: number } };
  incRef(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array | Int32Array | Uint8Array): tf.TensorInfo;
}

type NumericArray = Float32Array | Int32Array | Uint8Array;

/**
 * SplitV as row copies. The cpu kernel slices each part element by element through index
 * arithmetic (7.5 of the 17 s of a 512-token prefill of the H-Micro slice went there, splitting the
 * Mamba in-projection); here each part is `outer` contiguous runs copied with `set`.
 */
function splitVKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string' || x.dtype === 'complex64') return fallback(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const backend = args.backend as unknown as CpuBackendLike;
    const $axis = tf.util.parseAxisParam(axis, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, $axis);
    const values = backend.data.get(x.dataId).values as NumericArray;
    const outer = tf.util.sizeFromShape(x.shape.slice(0, $axis));
    const inner = tf.util.sizeFromShape(x.shape.slice($axis + 1));
    const rowLength = x.shape[$axis] * inner;
    const Ctor = values.constructor as new (n: number) => NumericArray;
    let offset = 0;
    return sizes.map((size) => {
      const run = size * inner;
      const out = new Ctor(outer * run);
      for (let r = 0; r < outer; r++) out.set(values.subarray(r * rowLength + offset, r * rowLength + offset + run), r * run);
      offset += run;
      const shape = x.shape.slice();
      shape[$axis] = size;
      return backend.makeTensorInfo(shape, x.dtype, out);
    });
  };
}

/**
 * Softmax over the last axis in one pass per row. The cpu kernel composes max, sub, exp, sum and
 * div kernels with a tensor each (2.1 s of the same prefill, in the attention layer's scores);
 * the arithmetic is the same: exp(x − max) / Σ exp(x − max).
 */
function softmaxKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { logits } = args.inputs as { logits: tf.TensorInfo };
    const { dim } = args.attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    if (logits.dtype !== 'float32' || rank === 0 || (dim !== -1 && dim !== rank - 1)) return fallback(args);
    const backend = args.backend as unknown as CpuBackendLike;
    const x = backend.data.get(logits.dataId).values as Float32Array;
    const n = logits.shape[rank - 1];
    const out = new Float32Array(x.length);
    for (let r0 = 0; r0 < x.length; r0 += n) {
      let max = -Infinity;
      for (let i = r0; i < r0 + n; i++) if (Number.isNaN(x[i]) || x[i] > max) max = x[i]; // NaN sticks, as in the cpu max
      let sum = 0;
      for (let i = r0; i < r0 + n; i++) {
        const e = Math.fround(Math.exp(x[i] - max));
        out[i] = e;
        sum += e;
      }
      const total = Math.fround(sum);
      for (let i = r0; i < r0 + n; i++) out[i] /= total;
    }
    return backend.makeTensorInfo(logits.shape, 'float32', out);
  };
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

/** Output rows shorter than this go to the cpu kernel: the per-row offsets would cost more. */
const MIN_BROADCAST_ROW = 16;

/**
 * A float32 elementwise binary op that broadcasts by output row: each row of the output's last
 * axis reads a row of each operand (or one repeated element where the operand's last axis is 1),
 * with the operands' row offsets stepped once per row. The cpu kernel maps every element's index
 * through the broadcast shapes (Multiply and Add took 2.2 of the 4 s of a 512-token prefill of the
 * H-Micro slice after the other fixes); the arithmetic per element is the same.
 */
/**
 * One output row of a binary op: both operands rows (`vv`), a row and a repeated element (`vs`),
 * or an element and a row (`sv`). Each op has its own three loops with the arithmetic written in
 * them: one shared loop calling the op through a function is polymorphic once four ops use it, and
 * V8 then calls per element (20 ns an element, 176 of a 512-token prefill's 1966 ms in Multiply).
 */
interface RowLoops {
  vv(out: Float32Array, o: number, a: Float32Array, ia: number, b: Float32Array, ib: number, n: number): void;
  vs(out: Float32Array, o: number, a: Float32Array, ia: number, b: number, n: number): void;
  sv(out: Float32Array, o: number, a: number, b: Float32Array, ib: number, n: number): void;
  scalar(a: number, b: number): number;
}

const ROW_LOOPS: Record<'add' | 'sub' | 'mul' | 'div', RowLoops> = {
  add: {
    vv: (out, o, a, ia, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] + b[ib + i];
    },
    vs: (out, o, a, ia, b, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] + b;
    },
    sv: (out, o, a, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a + b[ib + i];
    },
    scalar: (a, b) => a + b,
  },
  sub: {
    vv: (out, o, a, ia, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] - b[ib + i];
    },
    vs: (out, o, a, ia, b, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] - b;
    },
    sv: (out, o, a, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a - b[ib + i];
    },
    scalar: (a, b) => a - b,
  },
  mul: {
    vv: (out, o, a, ia, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] * b[ib + i];
    },
    vs: (out, o, a, ia, b, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] * b;
    },
    sv: (out, o, a, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a * b[ib + i];
    },
    scalar: (a, b) => a * b,
  },
  div: {
    vv: (out, o, a, ia, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] / b[ib + i];
    },
    vs: (out, o, a, ia, b, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a[ia + i] / b;
    },
    sv: (out, o, a, b, ib, n) => {
      for (let i = 0; i < n; i++) out[o + i] = a / b[ib + i];
    },
    scalar: (a, b) => a / b,
  },
};

function broadcastBinaryKernel(loops: RowLoops, fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    const shape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const rank = shape.length;
    const rowLength = rank === 0 ? 1 : shape[rank - 1];
    if (rowLength < MIN_BROADCAST_ROW) return fallback(args);
    const backend = args.backend as unknown as CpuBackendLike;
    const av = backend.data.get(a.dataId).values as Float32Array;
    const bv = backend.data.get(b.dataId).values as Float32Array;
    const out = new Float32Array(tf.util.sizeFromShape(shape));
    // Element strides of each operand along the output's axes (0 where it broadcasts).
    const stridesOf = (s: number[]) => {
      const padded = [...new Array<number>(rank - s.length).fill(1), ...s];
      const strides = new Array<number>(rank).fill(0);
      let step = 1;
      for (let d = rank - 1; d >= 0; d--) {
        strides[d] = padded[d] === 1 ? 0 : step;
        step *= padded[d];
      }
      return strides;
    };
    const sa = stridesOf(a.shape),
      sb = stridesOf(b.shape);
    const stepA = sa[rank - 1],
      stepB = sb[rank - 1];
    const index = new Array<number>(Math.max(0, rank - 1)).fill(0);
    let offA = 0,
      offB = 0;
    for (let o = 0; o < out.length; o += rowLength) {
      if (stepA === 1 && stepB === 1) loops.vv(out, o, av, offA, bv, offB, rowLength);
      else if (stepA === 1) loops.vs(out, o, av, offA, bv[offB], rowLength);
      else if (stepB === 1) loops.sv(out, o, av[offA], bv, offB, rowLength);
      else out.fill(loops.scalar(av[offA], bv[offB]), o, o + rowLength);
      // Next row: increment the index over the leading axes, moving each operand's offset.
      for (let d = rank - 2; d >= 0; d--) {
        offA += sa[d];
        offB += sb[d];
        if (++index[d] < shape[d]) break;
        offA -= sa[d] * shape[d];
        offB -= sb[d] * shape[d];
        index[d] = 0;
      }
    }
    return backend.makeTensorInfo(shape, 'float32', out);
  };
}

/** Kernels the native backend runs natively instead of through the cpu backend's JavaScript. */
function nativeOverrides(addon: NativeAddon): Map<string, (cpu: tf.KernelFunc) => tf.KernelFunc> {
  return new Map([
    [tf.BatchMatMul, (cpu: tf.KernelFunc) => batchMatMulKernel(addon, cpu)],
    [tf.SplitV, splitVKernel],
    [tf.Softmax, softmaxKernel],
    [tf.Add, (cpu: tf.KernelFunc) => broadcastBinaryKernel(ROW_LOOPS.add, cpu)],
    [tf.Sub, (cpu: tf.KernelFunc) => broadcastBinaryKernel(ROW_LOOPS.sub, cpu)],
    [tf.Multiply, (cpu: tf.KernelFunc) => broadcastBinaryKernel(ROW_LOOPS.mul, cpu)],
    [tf.RealDiv, (cpu: tf.KernelFunc) => broadcastBinaryKernel(ROW_LOOPS.div, cpu)],
    // The embedding gradient: tfjs-backend-cpu's is O(segments · rows), whatever was registered for cpu.
    [tf.UnsortedSegmentSum, () => unsortedSegmentSumCpuKernel],
    [tf.Slice, sliceKernel],
    [tf.PadV2, padKernel],
  ]);
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

/**
 * One float32 output of a {@link nativeKernel}: new values, or (`inPlaceOf`) the memory of the
 * named input, which the kernel has overwritten. Only an input that is `unshared` may be named,
 * and only when its caller has given it up (an attr of the kernel says so): the output then takes
 * over its buffer instead of allocating one, as tfjs's own Reshape shares it.
 */
export type NativeOutput = { shape: number[]; values: Float32Array } | { shape: number[]; inPlaceOf: string };

/** One input of a {@link nativeKernel}. */
export interface NativeInput {
  values: Float32Array | Int32Array;
  shape: number[];
  /** No other tensor shares this memory (tf.clone and reshape share it; their results count). */
  unshared: boolean;
}

/** Whether tfjs is recording operations for gradients now (a kernel must then leave its inputs intact). */
export function recordingGradients(): boolean {
  return (tf.engine().state as { gradientDepth: number }).gradientDepth > 0;
}

/**
 * A kernel of the `native` backend computed by `@graniteflow/native`, for
 * `KernelDefinition.backendKernels`: `run` gets the addon, the inputs' arrays and shapes (absent
 * optional inputs left out), and the attrs, and returns the float32 output with its shape, or a
 * list of them. Null when the addon is not loaded.
 */
export function nativeKernel<A>(
  run: (addon: NativeAddon, inputs: Record<string, NativeInput>, attrs: A) => NativeOutput | NativeOutput[],
): () => tf.KernelFunc | null {
  return () => {
    const addon = nativeAddon();
    if (addon === null) return null;
    return ({ inputs, backend, attrs }) => {
      const cpu = backend as unknown as CpuBackendLike;
      const named = inputs as Record<string, tf.TensorInfo>;
      const present = attrs !== undefined && PRESENT_INPUTS_ATTR in attrs ? presentInputNames(attrs) : Object.keys(named);
      const arrays: Record<string, NativeInput> = {};
      for (const name of present) {
        const info = named[name];
        const data = cpu.data.get(info.dataId);
        const values = valuesOfDtype(info.dtype, data.values as Float32Array | Int32Array) as Float32Array | Int32Array;
        // A converted copy is not the tensor's storage: writing it in place would be lost.
        arrays[name] = { values, shape: info.shape, unshared: data.refCount === 1 && values === data.values };
      }
      const out = run(addon, arrays, attrs as unknown as A);
      const toInfo = (o: NativeOutput): tf.TensorInfo => {
        if ('values' in o) return cpu.makeTensorInfo(o.shape, 'float32', o.values);
        const source = named[o.inPlaceOf];
        if (source === undefined || !arrays[o.inPlaceOf]?.unshared) {
          throw new Error(`native kernel: output in place of input '${o.inPlaceOf}', which is absent or shared`);
        }
        cpu.incRef(source.dataId);
        return { dataId: source.dataId, shape: o.shape, dtype: 'float32' };
      };
      return Array.isArray(out) ? out.map(toInfo) : toInfo(out);
    };
  };
}
