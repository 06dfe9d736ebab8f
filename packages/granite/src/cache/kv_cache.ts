import * as tf from '@tensorflow/tfjs-core';

/**
 * Keys and values of one attention layer: [B, nKV, S, hd] each, S growing by the tokens of every
 * call. NoPE layers store keys exactly as projected; RoPE layers store them rotated.
 */
export class KVCache {
  private keysTensor: tf.Tensor4D | null = null;
  private valuesTensor: tf.Tensor4D | null = null;

  /** Number of cached positions (S). */
  get length(): number {
    return this.keysTensor?.shape[2] ?? 0;
  }

  get keys(): tf.Tensor4D | null {
    return this.keysTensor;
  }

  get values(): tf.Tensor4D | null {
    return this.valuesTensor;
  }

  /**
   * Appends new keys and values ([B, nKV, T, hd]) and returns everything cached. The returned
   * tensors belong to the cache; the previous ones are disposed.
   */
  updateAndFetch(keys: tf.Tensor4D, values: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] {
    const nextKeys = this.keysTensor ? tf.concat([this.keysTensor, keys], 2) : tf.clone(keys);
    const nextValues = this.valuesTensor ? tf.concat([this.valuesTensor, values], 2) : tf.clone(values);
    this.keysTensor?.dispose();
    this.valuesTensor?.dispose();
    this.keysTensor = tf.keep(nextKeys);
    this.valuesTensor = tf.keep(nextValues);
    return [this.keysTensor, this.valuesTensor];
  }

  /** An independent copy. */
  clone(): KVCache {
    const copy = new KVCache();
    if (this.keysTensor && this.valuesTensor) {
      copy.keysTensor = tf.keep(tf.clone(this.keysTensor));
      copy.valuesTensor = tf.keep(tf.clone(this.valuesTensor));
    }
    return copy;
  }

  /** Bytes held (float32). */
  get byteSize(): number {
    return 4 * ((this.keysTensor?.size ?? 0) + (this.valuesTensor?.size ?? 0));
  }

  dispose(): void {
    this.keysTensor?.dispose();
    this.valuesTensor?.dispose();
    this.keysTensor = null;
    this.valuesTensor = null;
  }
}
