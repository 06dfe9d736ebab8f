import type * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { Parameter } from '../module/parameter';
import { RmsNorm } from './rms_norm_kernel';

/**
 * `y = w ⊙ x / sqrt(mean(x²) + eps)` over the last axis (x [..., dim], weight [dim]), float32 in
 * and out: one fused kernel on cpu, wasm and native (the composed tfjs ops elsewhere), differentiable.
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  if (x.rank === 0) throw new RangeError('rmsNorm: x must have at least one axis, got a scalar.');
  const dim = x.shape[x.shape.length - 1];
  if (weight.rank !== 1 || weight.shape[0] !== dim) {
    throw new RangeError(`rmsNorm: weight must be [${dim}] (the last axis of x [${x.shape}]), got [${weight.shape}].`);
  }
  if (x.dtype !== 'float32' || weight.dtype !== 'float32') {
    throw new TypeError(`rmsNorm expects float32 x and weight, got ${x.dtype} and ${weight.dtype}.`);
  }
  return RmsNorm.run({ x, weight }, { eps })[0];
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
