import * as tf from '@tensorflow/tfjs-core';
import type { MambaCache } from '@graniteflow/ops-mamba';
import { KVCache } from './kv_cache';

/** The cache of one layer: keys/values for attention, conv and SSM state for Mamba. */
export type LayerCache = KVCache | MambaCache;

/**
 * Per-layer caches aligned with the model's layers, plus what every layer needs to know about the
 * tokens seen so far: their count and which were padding. Clone it to keep a conversation's state
 * (a snapshot) and continue from it later without prefilling again.
 */
export class HybridCache {
  private maskTensor: tf.Tensor2D | null;

  constructor(
    readonly layers: LayerCache[],
    readonly batchSize: number,
    /** Tokens processed so far (including left padding). */
    public seqLength = 0,
    /** [B, seqLength] float32, 1 for real tokens and 0 for padding; null = no padding seen. */
    mask: tf.Tensor2D | null = null,
  ) {
    this.maskTensor = mask;
  }

  /** Padding mask of the tokens seen so far, or null when none were padding. */
  get mask(): tf.Tensor2D | null {
    return this.maskTensor;
  }

  /** Records `newTokens` more positions with their mask ([B, newTokens], or null = all real). */
  advance(newTokens: number, newMask: tf.Tensor2D | null): void {
    if (newMask !== null || this.maskTensor !== null) {
      const ones = () => tf.ones([this.batchSize, newTokens]) as tf.Tensor2D;
      const past = this.maskTensor ?? (tf.ones([this.batchSize, this.seqLength]) as tf.Tensor2D);
      const next = tf.tidy(() => tf.concat([past, newMask ?? ones()], 1) as tf.Tensor2D);
      if (past !== this.maskTensor) past.dispose();
      this.maskTensor?.dispose();
      this.maskTensor = tf.keep(next);
    }
    this.seqLength += newTokens;
  }

  /** An independent copy of every layer's state: a snapshot to resume from. */
  clone(): HybridCache {
    return new HybridCache(
      this.layers.map((c) => c.clone()),
      this.batchSize,
      this.seqLength,
      this.maskTensor ? tf.keep(tf.clone(this.maskTensor)) : null,
    );
  }

  /** Replaces this cache's state by a copy of `snapshot` (which stays usable). */
  restore(snapshot: HybridCache): void {
    if (snapshot.layers.length !== this.layers.length || snapshot.batchSize !== this.batchSize) {
      throw new RangeError(
        `Cannot restore a snapshot of ${snapshot.layers.length} layers × batch ${snapshot.batchSize} into a cache of ${this.layers.length} layers × batch ${this.batchSize}.`,
      );
    }
    this.takeFrom(snapshot.clone());
  }

  /**
   * Replaces this cache's state by `other`'s without copying it: `other`'s tensors move here and it
   * is left empty (disposing it afterwards frees nothing). For a state that was made only to end up
   * here, such as a row taken out of a batch.
   */
  takeFrom(other: HybridCache): void {
    if (other.layers.length !== this.layers.length || other.batchSize !== this.batchSize) {
      throw new RangeError(
        `Cannot move the state of ${other.layers.length} layers × batch ${other.batchSize} into a cache of ${this.layers.length} layers × batch ${this.batchSize}.`,
      );
    }
    this.disposeTensors();
    this.layers.splice(0, this.layers.length, ...other.layers.splice(0));
    this.seqLength = other.seqLength;
    this.maskTensor = other.maskTensor;
    other.maskTensor = null;
    other.seqLength = 0;
  }

  /** Bytes of state held (float32). */
  get byteSize(): number {
    let n = 4 * (this.maskTensor?.size ?? 0);
    for (const c of this.layers) {
      n += c instanceof KVCache ? c.byteSize : 4 * (c.convState.size + c.ssmState.size);
    }
    return n;
  }

  private disposeTensors(): void {
    for (const c of this.layers) c.dispose();
    this.maskTensor?.dispose();
    this.maskTensor = null;
  }

  dispose(): void {
    this.disposeTensors();
    this.seqLength = 0;
  }
}
