import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { Parameter } from '../module/parameter';

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Add a bias vector (default false). */
  bias?: boolean;
}

/**
 * `y = x · Wᵀ + b` with the weight stored PyTorch-style as [out, in], so checkpoint tensors load
 * without a transpose.
 */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LinearOptions = {},
  ) {
    super();
    this.weight = new Parameter([outFeatures, inFeatures]);
    if (options.bias) this.bias = new Parameter([outFeatures]);
  }

  /** x [..., in] → [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    const last = x.shape[x.shape.length - 1];
    if (last !== this.inFeatures) {
      throw new RangeError(`Linear expects input [..., ${this.inFeatures}], got [${x.shape}].`);
    }
    return tf.tidy(() => {
      const flat = tf.reshape(x, [-1, this.inFeatures]);
      let y = tf.matMul(flat, this.weight.value, false, true); // [rows, out]
      if (this.bias) y = tf.add(y, this.bias.value);
      return tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]);
    });
  }
}
