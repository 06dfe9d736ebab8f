import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { Parameter } from '../module/parameter';

/** `y = w ⊙ x / sqrt(mean(x²) + eps)` over the last axis, in float32. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
  });
}

/** RMS normalisation with a learned scale (no bias, no mean subtraction). */
export class RMSNorm extends Module {
  readonly weight: Parameter;

  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
  ) {
    super();
    this.weight = new Parameter([dim], 1);
  }

  /** x [..., dim] → [..., dim] */
  forward(x: tf.Tensor): tf.Tensor {
    const last = x.shape[x.shape.length - 1];
    if (last !== this.dim) {
      throw new RangeError(`RMSNorm expects input [..., ${this.dim}], got [${x.shape}].`);
    }
    return rmsNorm(x, this.weight.value, this.eps);
  }
}
