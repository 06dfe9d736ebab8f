import * as tf from '@tensorflow/tfjs-core';
import { defineKernel, type Kernel } from '@graniteflow/core';
import {
  MoeGatherRows,
  MoeScatterRows,
  type MoeGatherRowsAttrs,
  type MoeGatherRowsInputs,
  type MoeScatterRowsAttrs,
  type MoeScatterRowsInputs,
} from '../kernel_names';
import { gatherRowsImpl, scatterRowsImpl } from './MoeRows_impl';

/**
 * Row gather. Reference: `tf.gather`. Gradient: {@link moeScatterRowsKernel} — stock tfjs
 * differentiates gather with UnsortedSegmentSum, which the wasm backend lacks.
 */
export const moeGatherRowsKernel: Kernel<MoeGatherRowsInputs, MoeGatherRowsAttrs> = defineKernel<MoeGatherRowsInputs, MoeGatherRowsAttrs>({
  name: MoeGatherRows,
  inputNames: ['x', 'rows'],
  reference: ({ x, rows }) => [tf.gather(x, rows)],
  fused: {
    outputs: ({ x, rows }) => [{ shape: [rows.shape[0], x.shape[1]], dtype: 'float32' }],
    compute: ({ x, rows }, [out], shapes) => gatherRowsImpl(x as Float32Array, rows as Int32Array, shapes.x[1], out as Float32Array),
  },
  gradient: ([dy], { x, rows }) => ({
    x: moeScatterRowsKernel.run({ src: dy, rows }, { numRows: x.shape[0] })[0],
  }),
  nonDifferentiable: ['rows'],
});

/** Row scatter-add. Reference: `tf.unsortedSegmentSum`. Gradient: {@link moeGatherRowsKernel}. */
export const moeScatterRowsKernel: Kernel<MoeScatterRowsInputs, MoeScatterRowsAttrs> = defineKernel<
  MoeScatterRowsInputs,
  MoeScatterRowsAttrs
>({
  name: MoeScatterRows,
  inputNames: ['src', 'rows'],
  reference: ({ src, rows }, { numRows }) => [tf.unsortedSegmentSum(src, rows as tf.Tensor1D, numRows)],
  fused: {
    outputs: ({ src }, { numRows }) => [{ shape: [numRows, src.shape[1]], dtype: 'float32' }],
    compute: ({ src, rows }, [out], shapes) => scatterRowsImpl(src as Float32Array, rows as Int32Array, shapes.src[1], out as Float32Array),
  },
  gradient: ([dy], { rows }) => ({ src: moeGatherRowsKernel.run({ x: dy, rows }, {})[0] }),
  nonDifferentiable: ['rows'],
});
