import * as tf from '@tensorflow/tfjs-core';
import type { SelectiveScanAttrs, SelectiveScanInputs, SelectiveStateUpdateAttrs, SelectiveStateUpdateInputs } from '../kernel_names';
import { selectiveScanGradKernel } from '../kernels/SelectiveScanGrad';

type Grads<I> = { [K in keyof I]?: tf.Tensor };

/** Gradient of SelectiveScan: one SelectiveScanGrad kernel for all eight inputs. */
export function selectiveScanGrad(
  [dy, dFinalState]: tf.Tensor[],
  inputs: SelectiveScanInputs,
  _outputs: tf.Tensor[],
  attrs: SelectiveScanAttrs,
): Grads<SelectiveScanInputs> {
  const [x, dt, A_log, B, C, D, dt_bias, initialState] = selectiveScanGradKernel.run({ ...inputs, dy, dFinalState }, attrs);
  if (!inputs.initialState) initialState.dispose();
  return { x, dt, A_log, B, C, D, dt_bias, initialState: inputs.initialState ? initialState : undefined };
}

/** Gradient of SelectiveStateUpdate: the scan's backward pass for a sequence of one token. */
export function selectiveStateUpdateGrad(
  [dy, dState]: tf.Tensor[],
  inputs: SelectiveStateUpdateInputs,
  _outputs: tf.Tensor[],
  attrs: SelectiveStateUpdateAttrs,
): Grads<SelectiveStateUpdateInputs> {
  const { x, dt, B, C, state, ...params } = inputs;
  const one = (t: tf.Tensor) => tf.expandDims(t, 1); // [B, ...] → [B, 1, ...]
  return tf.tidy(() => {
    const g = selectiveScanGradKernel.run(
      { ...params, x: one(x), dt: one(dt), B: one(B), C: one(C), initialState: state, dy: one(dy), dFinalState: dState },
      { ...attrs, chunkSize: 1 },
    );
    const back = (t: tf.Tensor, like: tf.Tensor) => tf.reshape(t, like.shape);
    return {
      x: back(g[0], x),
      dt: back(g[1], dt),
      A_log: g[2],
      B: back(g[3], B),
      C: back(g[4], C),
      D: g[5],
      dt_bias: g[6],
      state: g[7],
    };
  }) as Grads<SelectiveStateUpdateInputs>;
}
