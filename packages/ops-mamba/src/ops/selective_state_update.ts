import type * as tf from '@tensorflow/tfjs-core';
import { selectiveStateUpdateKernel } from '../kernels/SelectiveStateUpdate';
import type { SelectiveStateUpdateInputs } from '../kernel_names';
import { checkGroups, checkRank, checkShape, timeStepLimit } from './validate';

/** The tensors of {@link selectiveStateUpdate}, shapes documented on the kernel's inputs. */
export type SelectiveStateUpdateArgs = SelectiveStateUpdateInputs;

/**
 * One recurrent (decode) step of the Mamba-2 SSM (model guide: Decode step): the
 * {@link selectiveScan} recurrence for a single token, from `state`. `selectiveScan` with T = 1 and
 * `initialState = state` gives the same result; this op skips the sequence axis and the chunking.
 *
 * `reuseState: true` gives `state` up to the op (dispose it afterwards, do not read it): the
 * native backend then writes the new state into its memory, unless another tensor shares it or
 * gradients are being recorded, instead of allocating a new one. {@link MambaCache} decodes so.
 *
 * @returns `y` [B, Hm, P] and the new `state` [B, Hm, P, N]; without `reuseState` the input state
 * is not modified.
 *
 * @example
 * ```ts
 * const [b, hm, p, g, n] = [1, 4, 8, 1, 16];
 * let state = tf.zeros([b, hm, p, n]);
 * const step = selectiveStateUpdate({
 *   x: tf.randomNormal([b, hm, p]), dt: tf.randomNormal([b, hm]), A_log: tf.zeros([hm]),
 *   B: tf.randomNormal([b, g, n]), C: tf.randomNormal([b, g, n]), D: tf.ones([hm]),
 *   dt_bias: tf.zeros([hm]), state,
 * });
 * state.dispose();
 * state = step.state; // step.y: [1, 4, 8]
 * ```
 */
export function selectiveStateUpdate(
  args: SelectiveStateUpdateArgs,
  options: { timeStepLimit?: readonly [number, number]; reuseState?: boolean } = {},
): { y: tf.Tensor; state: tf.Tensor } {
  const op = 'selectiveStateUpdate';
  const { x, dt, A_log, B, C, D, dt_bias, state } = args;
  checkRank(op, 'x', x, ['B', 'Hm', 'P']);
  const [batch, Hm, P] = x.shape;
  checkShape(op, 'B', B, ['B', 'G', 'N'], [batch, -1, -1]);
  const [, G, N] = B.shape;
  checkGroups(op, Hm, G, 'B', B.shape);
  checkShape(op, 'C', C, ['B', 'G', 'N'], [batch, G, N]);
  checkShape(op, 'dt', dt, ['B', 'Hm'], [batch, Hm]);
  checkShape(op, 'A_log', A_log, ['Hm'], [Hm]);
  checkShape(op, 'D', D, ['Hm'], [Hm]);
  checkShape(op, 'dt_bias', dt_bias, ['Hm'], [Hm]);
  checkShape(op, 'state', state, ['B', 'Hm', 'P', 'N'], [batch, Hm, P, N]);
  const [y, newState] = selectiveStateUpdateKernel.run(
    { x, dt, A_log, B, C, D, dt_bias, state },
    { ...timeStepLimit(op, options.timeStepLimit), reuseState: options.reuseState === true },
  );
  return { y, state: newState };
}
