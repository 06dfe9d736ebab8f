import { Module, normalInit, Parameter } from '@graniteflow/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The weights of the mixer's depthwise causal conv in checkpoint layout: `weight` [C, 1, K]
 * (PyTorch Conv1d with groups = C) and optional `bias` [C]. Reshaped to [C, K] at call time.
 */
export class DepthwiseConv1d extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;

  constructor(
    readonly channels: number,
    readonly kernelSize: number,
    options: { bias?: boolean } = {},
  ) {
    super();
    // Hugging Face's _init_weights gives nn.Conv1d normal(0, initializer_range), the bias zeros.
    this.weight = new Parameter([channels, 1, kernelSize], normalInit);
    if (options.bias) this.bias = new Parameter([channels]);
  }

  /** \[C, K]: tap K−1 multiplies the current token. */
  taps(): tf.Tensor {
    return tf.reshape(this.weight.value, [this.channels, this.kernelSize]);
  }
}
