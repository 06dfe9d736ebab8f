import * as tf from '@tensorflow/tfjs-core';
import { PackedTensor } from '@graniteflow/core';
import { groupedExpertsFrom, takeRows } from './grouped_experts';
import type { ExpertWeight } from './moe_experts';
import { unpackExpert } from './packed_experts_reference';

/** Expert e's change of a stacked weight ([rows, cols], as the weight's e-th slice), or none. */
export type ExpertDelta = ((expert: number) => tf.Tensor) | null;

/** Expert e's [rows, cols] slice of a stacked weight, float32 (a packed one unpacked alone). */
function expertSlice(w: ExpertWeight, expert: number): tf.Tensor {
  const [, rows, cols] = w.shape;
  if (w instanceof PackedTensor) return unpackExpert(w.bytes, w.format, expert, rows, cols);
  return tf.reshape(takeRows(w, expert, 1), [rows, cols]);
}

/**
 * The routed experts with each routed expert's weights changed by `W[e] + Δ(e)` (LoRA adapters on
 * the experts), on the sorted-dispatch path: one expert at a time, so only that expert's weights
 * (unpacked, when packed) and deltas exist at once. Differentiable with respect to `x`, `weights`
 * and whatever the deltas are made from; a packed base is a constant.
 *
 * @param x [N, H]
 * @param inputLinear [E, 2I, H], float32 or packed
 * @param outputLinear [E, H, I], float32 or packed
 * @param indices [N, k] int32, each in [0, E)
 * @param weights [N, k]
 */
export function moeExpertsWithDeltas(
  x: tf.Tensor,
  inputLinear: ExpertWeight,
  outputLinear: ExpertWeight,
  indices: tf.Tensor,
  weights: tf.Tensor,
  inputDelta: ExpertDelta,
  outputDelta: ExpertDelta,
): tf.Tensor {
  const changed = (w: ExpertWeight, delta: ExpertDelta, e: number) => {
    const base = expertSlice(w, e);
    return delta === null ? base : tf.add(base, delta(e));
  };
  return groupedExpertsFrom(x, indices, weights, inputLinear.shape[0], (e) => [
    changed(inputLinear, inputDelta, e),
    changed(outputLinear, outputDelta, e),
  ]);
}
