import * as tf from '@tensorflow/tfjs-core';
import { clipByGlobalNorm, globalNorm } from './clip';

/** Options of {@link trainStep}. */
export interface TrainStepOptions {
  /** What to train (default: every trainable registered variable, as `optimizer.minimize` does). */
  variables?: tf.Variable[];
  /** Clip the averaged gradients to this global L2 norm (default: no clipping). */
  maxGradNorm?: number;
  /** Set the optimizer's `learningRate` to this before the update (a schedule's value). */
  learningRate?: number;
}

/** What one {@link trainStep} did. */
export interface TrainStepResult {
  /** Mean of the micro-batches' losses. */
  loss: number;
  /** Global L2 norm of the averaged gradients, before clipping. */
  gradNorm: number;
}

/**
 * One optimizer step over `microBatches` (gradient accumulation): each micro-batch's loss is
 * differentiated on its own, so only one micro-batch's activations are alive at a time, and the
 * update uses the mean of their gradients, the same as one batch holding them all when each loss
 * is a mean over equally many tokens. Then optional clipping by global norm, then the update.
 * Leaves no tensor behind. A non-finite loss or gradient throws before the weights are touched.
 */
export function trainStep<B>(
  optimizer: tf.Optimizer,
  microBatches: readonly B[],
  lossOf: (batch: B) => tf.Scalar,
  options: TrainStepOptions = {},
): TrainStepResult {
  if (microBatches.length === 0) throw new RangeError('trainStep needs at least one micro-batch.');
  let sum: tf.NamedTensorMap = {};
  let lossSum = 0;
  try {
    for (const batch of microBatches) {
      const { value, grads } = tf.variableGrads(() => lossOf(batch), options.variables);
      lossSum += value.dataSync()[0];
      value.dispose();
      const next: tf.NamedTensorMap = { ...sum };
      for (const [name, g] of Object.entries(grads)) {
        if (sum[name] === undefined) {
          next[name] = g;
        } else {
          next[name] = tf.add(sum[name], g);
          sum[name].dispose();
          g.dispose();
        }
      }
      sum = next;
    }
    const loss = lossSum / microBatches.length;
    if (!Number.isFinite(loss)) throw new RangeError(`trainStep: the loss is ${loss}; the update was not applied.`);
    if (microBatches.length > 1) {
      const scaled: tf.NamedTensorMap = {};
      for (const [name, g] of Object.entries(sum)) {
        scaled[name] = tf.div(g, microBatches.length);
        g.dispose();
      }
      sum = scaled;
    }
    let gradNorm: number;
    if (options.maxGradNorm !== undefined) {
      const clipped = clipByGlobalNorm(sum, options.maxGradNorm);
      tf.dispose(Object.values(sum));
      sum = clipped.grads;
      gradNorm = clipped.norm;
    } else {
      gradNorm = globalNorm(sum);
    }
    if (!Number.isFinite(gradNorm)) throw new RangeError(`trainStep: the gradient norm is ${gradNorm}; the update was not applied.`);
    if (options.learningRate !== undefined) {
      if (!('learningRate' in optimizer))
        throw new TypeError(`trainStep: this ${optimizer.getClassName()} optimizer has no learningRate to set.`);
      (optimizer as unknown as { learningRate: number }).learningRate = options.learningRate;
    }
    optimizer.applyGradients(sum);
    return { loss, gradNorm };
  } finally {
    tf.dispose(Object.values(sum));
  }
}
