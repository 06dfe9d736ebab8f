import * as tf from '@tensorflow/tfjs-core';

/**
 * A named weight of a {@link Module}. Holds a tensor whose shape is fixed at construction (the
 * checkpoint shape), so loading can check every tensor against it.
 */
export class Parameter {
  private tensor: tf.Tensor | null;
  private readonly initial: () => tf.Tensor;

  /**
   * @param shape the checkpoint shape of the weight
   * @param init the initial value: a tensor, a constant every element takes (default 0), or a
   *   function making the tensor. Constants and functions allocate nothing until first read, so a
   *   model skeleton of any size costs nothing and needs no backend.
   */
  constructor(
    readonly shape: readonly number[],
    init: tf.Tensor | number | (() => tf.Tensor) = 0,
  ) {
    if (init instanceof tf.Tensor) {
      Parameter.checkShape(shape, init);
      this.tensor = init;
      this.initial = () => tf.zeros(shape as number[]);
    } else {
      this.tensor = null;
      this.initial = typeof init === 'number' ? () => tf.fill(shape as number[], init) : init;
    }
  }

  private static checkShape(shape: readonly number[], t: tf.Tensor): void {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(`Parameter expects shape [${shape}], got [${t.shape}].`);
    }
  }

  /** The current value. A parameter never assigned reads as its constant initial value. */
  get value(): tf.Tensor {
    if (this.tensor === null) {
      const t = tf.tidy(this.initial);
      Parameter.checkShape(this.shape, t);
      this.tensor = tf.keep(t);
    }
    return this.tensor;
  }

  /** True once a value has been assigned or read. */
  get isSet(): boolean {
    return this.tensor !== null;
  }

  /** Number of scalars in the weight. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** Replaces the value (taking ownership of `t`) and disposes the previous one. */
  assign(t: tf.Tensor): void {
    Parameter.checkShape(this.shape, t);
    if (this.tensor !== null && this.tensor !== t) this.tensor.dispose();
    this.tensor = tf.keep(t);
  }

  dispose(): void {
    this.tensor?.dispose();
    this.tensor = null;
  }
}
