import * as tf from '@tensorflow/tfjs-core';
import { attention, Linear, Module } from '@graniteflow/core';
import type { KVCache } from '../../cache/kv_cache';
import { headDim, type GraniteMoeHybridConfig } from './config';
import { applyRope } from './rope';

/** Per-call inputs shared by every attention layer of one forward pass. */
export interface AttentionContext {
  /** [B, S] over every cached and new position: 0 for padding, which no query attends; null: none. */
  keyMask: tf.Tensor2D | null;
  /** RoPE cos/sin [B, T, 1, hd], only for `position_embedding_type == "rope"`. */
  rope?: [tf.Tensor, tf.Tensor];
}

/**
 * GQA softmax attention (model guide: Attention): the scale is `attention_multiplier` itself, query
 * head j reads KV head floor(j / rep), no positional encoding unless the config asks for RoPE.
 */
export class GraniteAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  private readonly heads: number;
  private readonly kvHeads: number;
  private readonly hd: number;
  private readonly scale: number;

  constructor(cfg: GraniteMoeHybridConfig) {
    super();
    this.heads = cfg.num_attention_heads;
    this.kvHeads = cfg.num_key_value_heads;
    this.hd = headDim(cfg);
    this.scale = cfg.attention_multiplier;
    const bias = { bias: cfg.attention_bias };
    this.q_proj = new Linear(cfg.hidden_size, this.heads * this.hd, bias);
    this.k_proj = new Linear(cfg.hidden_size, this.kvHeads * this.hd, bias);
    this.v_proj = new Linear(cfg.hidden_size, this.kvHeads * this.hd, bias);
    this.o_proj = new Linear(this.heads * this.hd, cfg.hidden_size, bias);
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
