import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@graniteflow/core';
import { activate, type GatedActivation } from '@graniteflow/ops-moe';

/** Sizes of a {@link GraniteMLP}. */
export interface GraniteMLPConfig {
  hiddenSize: number;
  intermediateSize: number;
  activation: GatedActivation;
  bias: boolean;
}

/**
 * Llama's gated MLP, as `granite` checkpoints name it: `down_proj(act(gate_proj(x)) ⊙ up_proj(x))`,
 * the three projections kept apart (the hybrid family packs gate and up into one `input_linear`).
 */
export class GraniteMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;

  constructor(readonly config: GraniteMLPConfig) {
    super();
    const bias = { bias: config.bias };
    this.gate_proj = new Linear(config.hiddenSize, config.intermediateSize, bias);
    this.up_proj = new Linear(config.hiddenSize, config.intermediateSize, bias);
    this.down_proj = new Linear(config.intermediateSize, config.hiddenSize, bias);
  }

  /** x [..., H] → [..., H] */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() =>
      this.down_proj.forward(tf.mul(activate(this.gate_proj.forward(x), this.config.activation), this.up_proj.forward(x))),
    );
  }
}
