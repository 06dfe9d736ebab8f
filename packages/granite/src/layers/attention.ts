import * as tf from '@tensorflow/tfjs-core';
import { attention, Linear, Module } from '@graniteflow/core';
import type { KVCache } from '../cache/kv_cache';
import { applyRope } from './rope';

/** Sizes of a {@link CausalSelfAttention} layer, in this package's words (a family maps its config keys onto them). */
export interface AttentionConfig {
  hiddenSize: number;
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  /** q, k, v and o projections have biases. */
  bias: boolean;
  /** The softmax scale (Granite: `attention_multiplier`; plain attention: 1/sqrt(headDim)). */
  scale: number;
}

/** Per-call inputs shared by every attention layer of one forward pass. */
export interface AttentionContext {
  /** [B, S] over every cached and new position: 0 for padding, which no query attends; null: none. */
  keyMask: tf.Tensor2D | null;
  /** RoPE cos/sin [B, T, 1, hd], for models with rotary embeddings. */
  rope?: [tf.Tensor, tf.Tensor];
}

/**
 * Causal GQA softmax attention (model guide: Attention): query head j reads KV head floor(j / rep);
 * RoPE when the context carries angles, no positional encoding otherwise. Keys of the checkpoint:
 * `q_proj`, `k_proj`, `v_proj`, `o_proj`.
 */
export class CausalSelfAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  private readonly heads: number;
  private readonly kvHeads: number;
  private readonly hd: number;
  private readonly scale: number;

  constructor(config: AttentionConfig) {
    super();
    this.heads = config.numHeads;
    this.kvHeads = config.numKeyValueHeads;
    this.hd = config.headDim;
    this.scale = config.scale;
    const bias = { bias: config.bias };
    this.q_proj = new Linear(config.hiddenSize, this.heads * this.hd, bias);
    this.k_proj = new Linear(config.hiddenSize, this.kvHeads * this.hd, bias);
    this.v_proj = new Linear(config.hiddenSize, this.kvHeads * this.hd, bias);
    this.o_proj = new Linear(this.heads * this.hd, config.hiddenSize, bias);
  }

  /**
   * x [B, T, H] → [B, T, H]; appends this call's keys and values to `cache` when given. Causal:
   * the T queries are the last T positions of the keys. Runs the fused attention kernel, which
   * never builds the [T, S] scores (core's `attention`).
   */
  forward(x: tf.Tensor, ctx: AttentionContext, cache?: KVCache): tf.Tensor {
    return tf.tidy(() => {
      const [batch, time] = x.shape as [number, number, number];
      const { heads, kvHeads, hd } = this;
      let q = tf.reshape(this.q_proj.forward(x), [batch, time, heads, hd]) as tf.Tensor4D;
      let k = tf.reshape(this.k_proj.forward(x), [batch, time, kvHeads, hd]) as tf.Tensor4D;
      const v = tf.reshape(this.v_proj.forward(x), [batch, time, kvHeads, hd]) as tf.Tensor4D;
      if (ctx.rope) {
        q = applyRope(q, ...ctx.rope) as tf.Tensor4D;
        k = applyRope(k, ...ctx.rope) as tf.Tensor4D;
      }
      const options = { scale: this.scale, causal: true, keyMask: ctx.keyMask };
      let out: tf.Tensor;
      if (cache) {
        const { keys, values, length } = cache.append(k, v); // [B, nKV, capacity, hd]
        out = attention(q, keys, values, { ...options, keyLength: length, headsMajor: true });
      } else {
        out = attention(q, k, v, options);
      }
      return this.o_proj.forward(tf.reshape(out, [batch, time, heads * hd]));
    });
  }
}
