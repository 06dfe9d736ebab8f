import * as tf from '@tensorflow/tfjs-core';
import { defineKernel } from '@graniteflow/core';
import { MoeTakeRows, type MoeTakeRowsAttrs, type MoeTakeRowsInputs } from '../kernel_names';

/**
 * `x[start : start + count]` along the leading axis as one block copy: how the grouped path takes an
 * expert's weights out of the packed tensor. Reference `tf.slice`; gradient: `dy` padded back.
 */
export const moeTakeRowsKernel = defineKernel<MoeTakeRowsInputs, MoeTakeRowsAttrs>({
  name: MoeTakeRows,
  inputNames: ['x'],
  reference: ({ x }, { start, count }) => [tf.slice(x, [start, ...x.shape.slice(1).map(() => 0)], [count, ...x.shape.slice(1)])],
  fused: {
    outputs: ({ x }, { count }) => [{ shape: [count, ...x.shape.slice(1)], dtype: x.dtype }],
    compute: ({ x }, [out], shapes, { start, count }) => {
      const stride = shapes.x.slice(1).reduce((a, b) => a * b, 1);
      (out as Float32Array).set((x as Float32Array).subarray(start * stride, (start + count) * stride));
    },
  },
  gradient: ([dy], { x }, _outputs, { start, count }) => ({
    x: tf.pad(dy, [[start, x.shape[0] - start - count], ...x.shape.slice(1).map((): [number, number] => [0, 0])]),
  }),
});
