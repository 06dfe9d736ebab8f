import { Module, Parameter } from '@graniteflow/core';
import type * as tf from '@tensorflow/tfjs-core';
import { gatedRmsNorm } from '../ops/gated_rms_norm';

/** The mixer's gated RMSNorm (`norm.weight` [D]), full width by default as in HF (P12). */
export class GatedRMSNorm extends Module {
  readonly weight: Parameter;

  constructor(
    readonly dim: number,
    readonly eps: number,
    readonly groupSize = dim,
  ) {
    super();
    this.weight = new Parameter([dim], 1);
  }

  /** y, z [..., D] → [..., D] */
  forward(y: tf.Tensor, z: tf.Tensor): tf.Tensor {
    return gatedRmsNorm(y, z, this.weight.value, { eps: this.eps, groupSize: this.groupSize });
  }
}
