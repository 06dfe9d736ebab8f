import * as tf from '@tensorflow/tfjs-core';
import { PackedTensor } from '@graniteflow/core';
import { moeExpertsGemvKernel, reserveGemvScratch } from '../kernels/MoeExpertsGemv';
import { moePackedExpertsKernel, reservePackedExpertsScratch } from '../kernels/MoePackedExperts';
import { groupedExperts } from './grouped_experts';
import { checkDim, checkDtype, checkRank, fail, failShape, shapeStr } from './checks';

/**
 * Stacked expert weights as the routed-experts op takes them: a float32 tensor, or a weight held
 * packed (`PackedTensor`, e.g. `Parameter.packed` after `weight.pack('q4_0')`).
 */
export type ExpertWeight = tf.Tensor | PackedTensor;

/** What an expert weight is held as, for error messages. */
function describeWeight(w: ExpertWeight): string {
  return w instanceof PackedTensor ? `packed as ${w.format}` : `a ${w.dtype} tensor`;
}

/** How {@link moeExperts} computes the routed experts. */
export type MoeExpertsPath = 'auto' | 'grouped' | 'gemv';

/** Options of {@link moeExperts}. */
export interface MoeExpertsOptions {
  /**
   * `'grouped'`: sort slots by expert, one matMul pair per non-empty expert (XNNPACK on wasm).
   * `'gemv'`: the fused in-place kernel, slot by slot (reads only the selected experts' weights).
   * `'auto'` (default): `'gemv'` when the backend has the fused kernel (cpu, wasm), else
   * `'grouped'`. Measured on wasm (H-Tiny shapes): gemv 2.9 ms vs grouped 2.6 s at 1 token,
   * 50 ms vs 353 ms at 16, 1.47 s vs 6.7 s at 512 — tfjs-wasm's transposed matMul on freshly
   * sliced expert weights does not reach XNNPACK speed, while gemv streams each weight once per slot.
   *
   * With packed expert weights both paths group the slots by expert: `'grouped'` runs the kernel's
   * reference (each routed expert unpacked in JavaScript, then stock matMuls), `'gemv'` and
   * `'auto'` its fused body where the backend has one (rows unpacked one at a time; the native
   * addon's packed matmul on `native`).
   */
  path?: MoeExpertsPath;
}

/**
 * Routed SwiGLU experts over packed weights, computed only for routed tokens:
 * `out[n] = Σ_j weights[n,j] · output_linear[e]·(silu(g) ⊙ u)`, `[g, u] = input_linear[e]·x[n]`,
 * `e = indices[n,j]`. `input_linear` rows `[0, I)` are the gate, `[I, 2I)` the up projection.
 *
 * Two paths (see {@link MoeExpertsOptions}); both differentiable w.r.t. `x`, both weights and
 * `weights` (with packed expert weights: w.r.t. `x` and `weights`, the experts frozen). The grouped path (SwitchGLU-style): {@link moeDispatch}, gather rows, per non-empty
 * expert `matMul` + {@link swiglu} + `matMul`, then {@link moeCombine}. The gemv path never touches
 * unselected experts' weights, so a decode step reads only k experts.
 *
 * @param x tokens [N, H]
 * @param inputLinear gate/up weights [E, 2I, H] (gate rows first), float32 or packed
 * @param outputLinear down weights [E, H, I], float32 or packed (packed exactly when `inputLinear` is,
 *   in either format)
 * @param indices [N, k] int32 from {@link topKRouter}
 * @param weights [N, k] float32 from {@link topKRouter}
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([3, 8]);
 * const w1 = tf.randomNormal([4, 2 * 16, 8]), w2 = tf.randomNormal([4, 8, 16]);
 * const { indices, weights } = topKRouter(tf.randomNormal([3, 4]), 2);
 * const y = moeExperts(x, w1, w2, indices, weights); // [3, 8]
 * ```
 */
export function moeExperts(
  x: tf.Tensor,
  inputLinear: ExpertWeight,
  outputLinear: ExpertWeight,
  indices: tf.Tensor,
  weights: tf.Tensor,
  options: MoeExpertsOptions = {},
): tf.Tensor {
  const op = 'moeExperts';
  if (inputLinear instanceof PackedTensor !== outputLinear instanceof PackedTensor) {
    fail(
      op,
      `inputLinear ${shapeStr(inputLinear.shape)} is ${describeWeight(inputLinear)} but outputLinear ` +
        `${shapeStr(outputLinear.shape)} is ${describeWeight(outputLinear)}: the experts need both weights packed ` +
        '(in any formats) or both float32.',
    );
  }
  checkRank(op, 'x', x, 2, '[N, H]');
  checkRank(op, 'inputLinear', inputLinear, 3, '[E, 2I, H]');
  checkRank(op, 'outputLinear', outputLinear, 3, '[E, H, I]');
  checkRank(op, 'indices', indices, 2, '[N, k]');
  checkRank(op, 'weights', weights, 2, '[N, k]');
  for (const [name, t] of [
    ['x', x],
    ['inputLinear', inputLinear],
    ['outputLinear', outputLinear],
    ['weights', weights],
  ] as const) {
    if (t instanceof tf.Tensor) checkDtype(op, name, t, 'float32');
  }
  checkDtype(op, 'indices', indices, 'int32');
  const [n, h] = x.shape;
  const [e, twoI] = inputLinear.shape;
  if (twoI % 2 !== 0) failShape(op, `inputLinear must be [E, 2I, H] with an even second axis, got [${inputLinear.shape}].`);
  const i = twoI / 2;
  checkDim(op, 'inputLinear', inputLinear, 2, h, 'x', x, '[E, 2I, H]');
  checkDim(op, 'outputLinear', outputLinear, 0, e, 'inputLinear', inputLinear, '[E, H, I]');
  checkDim(op, 'outputLinear', outputLinear, 1, h, 'x', x, '[E, H, I]');
  checkDim(op, 'outputLinear', outputLinear, 2, i, 'inputLinear', inputLinear, '[E, H, I]');
  checkDim(op, 'indices', indices, 0, n, 'x', x, '[N, k]');
  checkDim(op, 'weights', weights, 0, n, 'x', x, '[N, k]');
  checkDim(op, 'weights', weights, 1, indices.shape[1] as number, 'indices', indices, '[N, k]');

  const path = options.path ?? 'auto';
  if (n === 0) return tf.zeros([0, h]);
  if (inputLinear instanceof PackedTensor && outputLinear instanceof PackedTensor) {
    const inputs = { x, inputLinear: inputLinear.bytes, outputLinear: outputLinear.bytes, indices, weights };
    const attrs = {
      inputFormat: inputLinear.format,
      outputFormat: outputLinear.format,
      numExperts: e,
      hiddenSize: h,
      intermediateSize: i,
    };
    if (path === 'grouped') return moePackedExpertsKernel.reference(inputs, attrs)[0];
    reservePackedExpertsScratch(h, i);
    return moePackedExpertsKernel.run(inputs, attrs)[0];
  }
  const [w1, w2] = [inputLinear as tf.Tensor, outputLinear as tf.Tensor];
  if (resolveMoeExpertsPath(path) === 'gemv') {
    reserveGemvScratch(i);
    return moeExpertsGemvKernel.run({ x, inputLinear: w1, outputLinear: w2, indices, weights }, {})[0];
  }
  return groupedExperts(x, w1, w2, indices, weights);
}

/**
 * The path {@link moeExperts} takes for float expert weights on the active backend: `path` itself,
 * or for `'auto'` the fused in-place kernel where the backend has it (cpu, wasm), else grouped.
 */
export function resolveMoeExpertsPath(path: MoeExpertsPath = 'auto'): Exclude<MoeExpertsPath, 'auto'> {
  if (path !== 'auto') return path;
  return moeExpertsGemvKernel.hasFused() ? 'gemv' : 'grouped';
}
