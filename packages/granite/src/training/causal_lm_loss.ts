import * as tf from '@tensorflow/tfjs-core';
import { loadBalancingLoss } from '@graniteflow/ops-moe';
import { familyOf } from '../models';
import type { CausalLM } from '../models/causal_lm';

/** Label of a position that does not count (transformers' `ignore_index`). */
export const IGNORE_INDEX = -100;

/** Rows of token ids and, position for position, the token each should predict. */
export interface CausalLmBatch {
  /** [B][T] input ids. */
  inputs: readonly (readonly number[])[];
  /** [B][T] the next token at each position, or {@link IGNORE_INDEX} where it does not count (prompt tokens in fine-tuning). */
  labels: readonly (readonly number[])[];
}

/** Options of {@link causalLmLoss}. */
export interface CausalLmLossOptions {
  /**
   * Weight of the MoE load-balancing loss added to the cross-entropy (default the config's
   * `router_aux_loss_coef`; 0 leaves it out, as transformers does unless `output_router_logits`).
   * Dense models have none.
   */
  auxLossCoef?: number;
}

/**
 * The training loss of a language model on a batch: mean next-token cross-entropy (nats) over the
 * positions whose label counts, plus `auxLossCoef` × the load-balancing loss of every MoE layer's
 * router (`loadBalancingLoss` over all layers' logits, as transformers' `load_balancing_loss_func`).
 * A scalar to differentiate, e.g. the loss of `trainStep` or `optimizer.minimize`.
 */
export function causalLmLoss(model: CausalLM, batch: CausalLmBatch, options: CausalLmLossOptions = {}): tf.Scalar {
  const cfg = model.config;
  const rows = batch.inputs.length;
  const time = rows > 0 ? batch.inputs[0].length : 0;
  if (rows === 0 || time === 0) throw new RangeError('causalLmLoss: the batch is empty.');
  if (batch.labels.length !== rows || batch.inputs.some((r, b) => r.length !== time || batch.labels[b].length !== time)) {
    throw new RangeError(`causalLmLoss: inputs and labels must both be ${rows} rows of ${time} tokens.`);
  }
  const flatLabels = batch.labels.flat();
  for (const id of flatLabels) {
    if (id !== IGNORE_INDEX && (!Number.isInteger(id) || id < 0 || id >= cfg.vocab_size)) {
      throw new RangeError(`causalLmLoss: label ${id} is outside the vocabulary [0, ${cfg.vocab_size}) and is not ${IGNORE_INDEX}.`);
    }
  }
  const counted = flatLabels.filter((id) => id !== IGNORE_INDEX).length;
  if (counted === 0) throw new RangeError(`causalLmLoss: every label is ${IGNORE_INDEX}; nothing to learn from.`);
  const experts = familyOf(cfg).routedExperts(cfg);
  const coef = options.auxLossCoef ?? experts?.auxLossCoef ?? 0;
  const withAux = coef !== 0 && experts !== null;
  const ids = tf.tensor2d(batch.inputs.flat(), [rows, time], 'int32');
  let out: ReturnType<typeof model.forward> = {};
  try {
    out = model.forward(ids, { routerLogits: withAux });
    return tf.tidy(() => {
      const n = rows * time;
      const logProbs = tf.reshape(tf.logSoftmax(tf.reshape(out.logits!, [n, cfg.vocab_size])), [n * cfg.vocab_size]);
      // The label's log-probability at each position, by one flat gather (no [N, V] one-hot).
      const at = flatLabels.map((id, i) => i * cfg.vocab_size + (id === IGNORE_INDEX ? 0 : id));
      const picked = tf.gather(logProbs, tf.tensor1d(at, 'int32'));
      const weights = tf.tensor1d(flatLabels.map((id) => (id === IGNORE_INDEX ? 0 : 1)));
      const lm = tf.neg(tf.div(tf.sum(tf.mul(picked, weights)), counted));
      if (!withAux) return lm as tf.Scalar;
      const aux = loadBalancingLoss(out.routerLogits!, experts.numExperts, experts.topK);
      return tf.add(lm, tf.mul(aux, coef)) as tf.Scalar;
    });
  } finally {
    // The tape keeps its own handles on what backprop needs: these can go now.
    tf.dispose([ids, ...(out.logits ? [out.logits] : []), ...(out.routerLogits ?? [])]);
  }
}
