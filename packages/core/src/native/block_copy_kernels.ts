/**
 * Slice and PadV2 for the native backend as copies of contiguous runs. tfjs-backend-cpu moves a
 * strided slice or a pad element by element through index arithmetic (`indexToLoc`); a training
 * step of the demo model spent 1.7 s of 4.9 in them (the MoE gradient pads each expert's weight
 * gradient back to the stacked shape; attention slices heads). The values moved are the same.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CpuBackendLike } from '../kernels/backend_adapters';
import type { FlatArray } from '../kernels/fused_kernel';
import { countSimdCall } from '../kernels/simd_module';

/** The fast-path counters (`simdCounters()`): tests prove these kernels ran. */
export const SLICE_COUNTER = 'Slice/runs';
export const PAD_COUNTER = 'PadV2/runs';

function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

/**
 * Copies the box `box` (a shape) from `src` (shape `srcShape`) starting at `srcAt` into `dst`
 * (shape `dstShape`) starting at `dstAt`, one innermost run at a time.
 */
function copyBox(
  src: FlatArray,
  srcShape: readonly number[],
  srcAt: readonly number[],
  dst: FlatArray,
  dstShape: readonly number[],
  dstAt: readonly number[],
  box: readonly number[],
): void {
  const rank = box.length;
  if (box.some((d) => d === 0)) return;
  if (rank === 0) {
    dst[0] = src[0];
    return;
  }
  const ss = stridesOf(srcShape);
  const ds = stridesOf(dstShape);
  const run = box[rank - 1];
  const index = new Array<number>(rank - 1).fill(0); // the position among the outer dims
  for (;;) {
    let from = srcAt[rank - 1];
    let to = dstAt[rank - 1];
    for (let d = 0; d < rank - 1; d++) {
      from += (srcAt[d] + index[d]) * ss[d];
      to += (dstAt[d] + index[d]) * ds[d];
    }
    dst.set(src.subarray(from, from + run), to);
    let d = rank - 2;
    while (d >= 0 && ++index[d] === box[d]) index[d--] = 0;
    if (d < 0) return;
  }
}

function isNumeric(dtype: tf.DataType): boolean {
  return dtype === 'float32' || dtype === 'int32' || dtype === 'bool';
}

/** Slice by runs; strings and complex numbers go to the cpu kernel. */
export function sliceKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (!isNumeric(x.dtype)) return fallback(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const [$begin, $size] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
    tf.slice_util.assertParamsValid(x as tf.Tensor, $begin, $size);
    const backend = args.backend as unknown as CpuBackendLike;
    const values = backend.data.get(x.dataId).values as FlatArray;
    const Ctor = values.constructor as new (n: number) => FlatArray;
    const out = new Ctor(tf.util.sizeFromShape($size));
    copyBox(values, x.shape, $begin, out, $size, new Array<number>($size.length).fill(0), $size);
    countSimdCall(SLICE_COUNTER);
    return backend.makeTensorInfo($size, x.dtype, out);
  };
}

/** PadV2 (a constant) by runs; strings and complex numbers go to the cpu kernel. */
export function padKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (!isNumeric(x.dtype)) return fallback(args);
    const { paddings, constantValue } = args.attrs as unknown as { paddings: [number, number][]; constantValue: number };
    const backend = args.backend as unknown as CpuBackendLike;
    const values = backend.data.get(x.dataId).values as FlatArray;
    const shape = x.shape.map((d, i) => paddings[i][0] + d + paddings[i][1]);
    const Ctor = values.constructor as new (n: number) => FlatArray;
    const out = new Ctor(tf.util.sizeFromShape(shape));
    if (constantValue !== 0) out.fill(constantValue);
    copyBox(
      values,
      x.shape,
      new Array<number>(x.shape.length).fill(0),
      out,
      shape,
      paddings.map((p) => p[0]),
      x.shape,
    );
    countSimdCall(PAD_COUNTER);
    return backend.makeTensorInfo(shape, x.dtype, out);
  };
}
