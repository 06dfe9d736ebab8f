import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { normalInit } from '../module/initializers';
import { Parameter } from '../module/parameter';
import { packedMatMul } from '../packed/packed_matmul';

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Add a bias vector (default false). */
  bias?: boolean;
}

/**
 * `y = x · Wᵀ + b`. The weight's checkpoint shape is PyTorch's [out, in] (names and loading match
 * checkpoints as they are); in memory it is kept as [in, out], the operand layout tfjs multiplies
 * fastest (see `ParameterOptions.layout`), or packed as [out, in] once `weight.pack(format)` (or a
 * packed load) made it so.
 */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias?: Parameter;
  // A private field, so not a child: the base model's parameter names and checkpoint stay its own.
  #adapter: { forward(x: tf.Tensor): tf.Tensor } | null = null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LinearOptions = {},
  ) {
    super();
    this.weight = new Parameter([outFeatures, inFeatures], normalInit, { layout: 'transposed' });
    if (options.bias) this.bias = new Parameter([outFeatures]);
  }

  /** The LoRA adapter added to this layer's output (see `LoraAdapters`), or null. */
  get adapter(): { forward(x: tf.Tensor): tf.Tensor } | null {
    return this.#adapter;
  }

  /** Adds `adapter`'s output to this layer's from now on (null removes it). */
  attachAdapter(adapter: { forward(x: tf.Tensor): tf.Tensor } | null): void {
    this.#adapter = adapter;
  }

  /** x [..., in] → [..., out] (+ the adapter's output when one is attached) */
  forward(x: tf.Tensor): tf.Tensor {
    const adapter = this.#adapter;
    if (adapter === null) return this.baseForward(x);
    return tf.tidy(() => tf.add(this.baseForward(x), adapter.forward(x)));
  }

  private baseForward(x: tf.Tensor): tf.Tensor {
    const last = x.shape[x.shape.length - 1];
    if (last !== this.inFeatures) {
      throw new RangeError(`Linear expects input [..., ${this.inFeatures}], got [${x.shape}].`);
    }
    const packed = this.weight.packed;
    if (packed) {
      // Any rank in one kernel: no reshapes around the product.
      if (!this.bias) return packedMatMul(x, packed);
      return tf.tidy(() => tf.add(packedMatMul(x, packed), this.bias!.value));
    }
    return tf.tidy(() => {
      const flat = tf.reshape(x, [-1, this.inFeatures]);
      let y = tf.matMul(flat, this.weight.value); // [rows, out]
      if (this.bias) y = tf.add(y, this.bias.value);
      return tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]);
    });
  }
}
