import * as tf from '@tensorflow/tfjs-core';
import { mambaConvDim, type Mamba2Config } from './mamba2_config';

/**
 * The recurrent state of one Mamba-2 mixer for a batch of sequences, with named fields:
 * `convState` [B, K−1, conv_dim] holds the last K−1 raw (pre-conv, pre-activation) xBC inputs
 * (P22: the K−1 convention of mlx / llama.cpp), `ssmState` [B, Hm, P, N] the SSM state S.
 * The cache owns its tensors: {@link MambaCache.update} disposes the ones it replaces. On the
 * native backend a decode step writes the new SSM state into the old one's memory when no other
 * tensor shares it, so an array read from `ssmState.dataSync()` changes with the next step: keep a
 * snapshot with {@link MambaCache.clone} (or `tf.clone`), which the step then leaves untouched.
 */
export class MambaCache {
  private conv: tf.Tensor;
  private ssm: tf.Tensor;
  /** Tokens absorbed so far. */
  offset: number;

  /** Takes ownership of both tensors. */
  constructor(convState: tf.Tensor, ssmState: tf.Tensor, offset = 0) {
    if (convState.rank !== 3 || ssmState.rank !== 4 || convState.shape[0] !== ssmState.shape[0]) {
      throw new RangeError(
        `MambaCache: convState must be [B, K-1, conv_dim] and ssmState [B, Hm, P, N] with the same B, got [${convState.shape.join(', ')}] and [${ssmState.shape.join(', ')}]`,
      );
    }
    this.conv = tf.keep(convState);
    this.ssm = tf.keep(ssmState);
    this.offset = offset;
  }

  /** A fresh (all-zero) cache for `batch` sequences of a mixer with config `c`. */
  static zeros(c: Mamba2Config, batch: number): MambaCache {
    return new MambaCache(tf.zeros([batch, c.convKernel - 1, mambaConvDim(c)]), tf.zeros([batch, c.numHeads, c.headDim, c.stateSize]));
  }

  /** [B, K−1, conv_dim] */
  get convState(): tf.Tensor {
    return this.conv;
  }

  /** [B, Hm, P, N] */
  get ssmState(): tf.Tensor {
    return this.ssm;
  }

  /** Number of sequences. */
  get batch(): number {
    return this.ssm.shape[0];
  }

  /**
   * Replaces both states (taking ownership of the new tensors, disposing the old ones) and advances
   * {@link MambaCache.offset} by `tokens`.
   */
  update(convState: tf.Tensor, ssmState: tf.Tensor, tokens: number): void {
    const oldConv = this.conv;
    const oldSsm = this.ssm;
    this.conv = tf.keep(convState);
    this.ssm = tf.keep(ssmState);
    if (oldConv !== convState) oldConv.dispose();
    if (oldSsm !== ssmState) oldSsm.dispose();
    this.offset += tokens;
  }

  /** An independent copy (a snapshot to resume a shared prefix from). */
  clone(): MambaCache {
    return new MambaCache(tf.clone(this.conv), tf.clone(this.ssm), this.offset);
  }

  dispose(): void {
    this.conv.dispose();
    this.ssm.dispose();
  }
}
