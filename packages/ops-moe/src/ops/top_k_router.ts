import * as tf from '@tensorflow/tfjs-core';
import { moeTopKRouterKernel } from '../kernels/MoeTopKRouter';
import { checkDtype, fail, failShape, shapeStr } from './checks';

/** Result of {@link topKRouter}. */
export interface TopKRouting {
  /** Selected experts per token, best first: [..., k] int32. */
  indices: tf.Tensor;
  /** Softmax over the k selected logits (sums to 1 per token): [..., k] float32. */
  weights: tf.Tensor;
}

/**
 * Top-k MoE routing (Granite / Mixtral style; model guide: Mixture of experts, and Pitfalls, P11):
 * picks the k largest raw logits per token and turns **only those k** into weights with a softmax,
 * so each token's weights sum to 1. Equivalent to "softmax over all E, take top k, renormalise".
 *
 * Order and ties: `indices[..., 0]` is the largest logit. Equal logits are ordered by expert index,
 * lowest first, so a tie at the k-th place selects the lower-numbered expert — deterministic on
 * every backend. NaN logits are never preferred over numbers.
 *
 * Differentiable w.r.t. `logits` through `weights`; unselected experts get zero gradient.
 * Fused on `cpu` and `wasm`; elsewhere the composed reference (`tf.topk` + softmax) runs.
 *
 * @param logits router logits [..., E] (float32), typically [N, E]
 * @param k experts per token, 1 ≤ k ≤ E
 *
 * @example
 * ```ts
 * const logits = tf.tensor2d([[1, 3, 2, 3]]);
 * const { indices, weights } = topKRouter(logits, 2);
 * indices.print(); // [[1, 3]]  (tie between experts 1 and 3: lower index first)
 * weights.print(); // [[0.5, 0.5]]
 * ```
 */
export function topKRouter(logits: tf.Tensor, k: number): TopKRouting {
  const op = 'topKRouter';
  if (logits.rank < 1) failShape(op, `logits must be [..., E] (rank ≥ 1), got ${shapeStr(logits.shape)}.`);
  checkDtype(op, 'logits', logits, 'float32');
  const e = logits.shape[logits.rank - 1];
  if (!Number.isInteger(k) || k < 1 || k > e) {
    fail(op, `k must be an integer in [1, E] with E = ${e} from logits ${shapeStr(logits.shape)}, got ${k}.`);
  }
  const lead = logits.shape.slice(0, -1);
  const n = lead.reduce((a, b) => a * b, 1);
  return tf.tidy(() => {
    const flat = tf.reshape(logits, [n, e]);
    const [weights, indices] = moeTopKRouterKernel.run({ logits: flat }, { k });
    return { indices: tf.reshape(indices, [...lead, k]), weights: tf.reshape(weights, [...lead, k]) };
  });
}
