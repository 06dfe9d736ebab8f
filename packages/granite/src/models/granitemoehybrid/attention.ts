import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module } from '@graniteflow/core';
import type { KVCache } from '../../cache/kv_cache';
import { headDim, type GraniteMoeHybridConfig } from './config';
import { applyRope } from './rope';

/** Per-call inputs shared by every attention layer of one forward pass. */
export interface AttentionContext {
  /** Additive mask [B, 1, 1, T, S]: 0 where query t may attend key s, a large negative otherwise. */
  mask: tf.Tensor;
  /** RoPE cos/sin [B, T, 1, hd], only for `position_embedding_type == "rope"`. */
  rope?: [tf.Tensor, tf.Tensor];
}

/**
 * GQA softmax attention (GRANITE.md §4.4): the scale is `attention_multiplier` itself, query head j
 * reads KV head floor(j / rep), no positional encoding unless the config asks for RoPE.
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

  /** x [B, T, H] → [B, T, H]; appends this call's keys and values to `cache` when given. */
  forward(x: tf.Tensor, ctx: AttentionContext, cache?: KVCache): tf.Tensor {
    return tf.tidy(() => {
      const [batch, time] = x.shape as [number, number, number];
      const { heads, kvHeads, hd } = this;
      const rep = heads / kvHeads;
      let q = tf.reshape(this.q_proj.forward(x), [batch, time, heads, hd]);
      let k = tf.reshape(this.k_proj.forward(x), [batch, time, kvHeads, hd]);
      const v = tf.reshape(this.v_proj.forward(x), [batch, time, kvHeads, hd]);
      if (ctx.rope) {
        q = applyRope(q, ...ctx.rope);
        k = applyRope(k, ...ctx.rope);
      }
      let keys = tf.transpose(k, [0, 2, 1, 3]) as tf.Tensor4D; // [B, nKV, T, hd]
      let values = tf.transpose(v, [0, 2, 1, 3]) as tf.Tensor4D;
      if (cache) [keys, values] = cache.updateAndFetch(keys, values); // [B, nKV, S, hd]
      const span = keys.shape[2];
      // Heads j = kv·rep + r share KV head kv, so queries regroup as [B·nKV, rep·T, hd].
      const queries = tf.reshape(tf.transpose(q, [0, 2, 1, 3]), [batch * kvHeads, rep * time, hd]);
      const scores = tf.mul(
        tf.matMul(queries, tf.reshape(keys, [batch * kvHeads, span, hd]), false, true),
        this.scale,
      ); // [B·nKV, rep·T, S]
      const masked = tf.add(tf.reshape(scores, [batch, kvHeads, rep, time, span]), ctx.mask);
      const probs = tf.reshape(tf.softmax(masked), [batch * kvHeads, rep * time, span]);
      const out = tf.matMul(probs, tf.reshape(values, [batch * kvHeads, span, hd])); // [B·nKV, rep·T, hd]
      const merged = tf.reshape(
        tf.transpose(tf.reshape(out, [batch, heads, time, hd]), [0, 2, 1, 3]),
        [batch, time, heads * hd],
      );
      return this.o_proj.forward(merged);
    });
  }
}
