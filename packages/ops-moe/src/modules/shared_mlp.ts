import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@graniteflow/core';
import { fail, failShape, shapeStr } from '../ops/checks';
import { gatedActivation, GATED_ACTIVATIONS, isGatedActivation, type GatedActivation } from '../ops/gated_activation';

/** Sizes of a {@link SharedMLP} (Granite: `hidden_size`, `shared_intermediate_size`). */
export interface SharedMLPConfig {
  /** H */
  hiddenSize: number;
  /** S */
  sharedIntermediateSize: number;
  /** Of the gate half (HF `hidden_act`; default `'silu'`: SwiGLU). */
  activation?: GatedActivation;
}

/**
 * The always-on gated MLP (model guide: Mixture of experts): `input_linear` H → 2S (first half
 * gate, second half up), `output_linear` S → H; `y = output_linear(act(a[:S]) ⊙ a[S:])`, SwiGLU
 * (act = silu) unless `config.activation` says otherwise. Keys:
 * `input_linear.weight` [2S, H], `output_linear.weight` [H, S].
 *
 * @example
 * ```ts
 * const mlp = new SharedMLP({ hiddenSize: 8, sharedIntermediateSize: 16 });
 * const y = mlp.forward(tf.randomNormal([2, 3, 8])); // [2, 3, 8]
 * ```
 */
export class SharedMLP extends Module {
  readonly input_linear: Linear;
  readonly output_linear: Linear;

  constructor(readonly config: SharedMLPConfig) {
    super();
    for (const name of ['hiddenSize', 'sharedIntermediateSize'] as const) {
      const v = config[name];
      if (!Number.isInteger(v) || v < 1) fail('SharedMLP', `config.${name} must be a positive integer, got ${v}.`);
    }
    if (config.activation !== undefined && !isGatedActivation(config.activation)) {
      fail('SharedMLP', `config.activation must be one of ${GATED_ACTIVATIONS.join(', ')}, got ${String(config.activation)}.`);
    }
    this.input_linear = new Linear(config.hiddenSize, 2 * config.sharedIntermediateSize);
    this.output_linear = new Linear(config.sharedIntermediateSize, config.hiddenSize);
  }

  /** x [..., H] → [..., H] */
  forward(x: tf.Tensor): tf.Tensor {
    const h = this.config.hiddenSize;
    if (x.rank < 1 || x.shape[x.rank - 1] !== h) {
      failShape(
        'SharedMLP',
        `x must be [..., ${h}] to match input_linear.weight ${shapeStr(this.input_linear.weight.shape)}, got ${shapeStr(x.shape)}.`,
      );
    }
    return tf.tidy(() => this.output_linear.forward(gatedActivation(this.input_linear.forward(x), this.config.activation ?? 'silu')));
  }
}
