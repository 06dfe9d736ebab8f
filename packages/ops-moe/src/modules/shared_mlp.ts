import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@graniteflow/core';
import { fail, failShape, shapeStr } from '../ops/checks';
import { swiglu } from '../ops/swiglu';

/** Sizes of a {@link SharedMLP} (Granite: `hidden_size`, `shared_intermediate_size`). */
export interface SharedMLPConfig {
  /** H */
  hiddenSize: number;
  /** S */
  sharedIntermediateSize: number;
}

/**
 * The always-on SwiGLU MLP (model guide: Mixture of experts): `input_linear` H → 2S (first half
 * gate, second half up), `output_linear` S → H; `y = output_linear(silu(a[:S]) ⊙ a[S:])`. Keys:
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
    for (const [name, v] of Object.entries(config)) {
      if (!Number.isInteger(v) || v < 1) fail('SharedMLP', `config.${name} must be a positive integer, got ${v}.`);
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
    return tf.tidy(() => this.output_linear.forward(swiglu(this.input_linear.forward(x))));
  }
}
