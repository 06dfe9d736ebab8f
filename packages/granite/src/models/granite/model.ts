import * as tf from '@tensorflow/tfjs-core';
import { type Embedding, Module, RMSNorm } from '@graniteflow/core';
import type { LayerCache } from '../../cache/hybrid_cache';
import { KVCache } from '../../cache/kv_cache';
import { CausalSelfAttention } from '../../layers/attention';
import { DecoderOnlyLM, tokenEmbedding, type CachingDecoderLayer, type DecoderBackbone } from '../../layers/decoder_only_lm';
import type { LayerContext } from '../../layers/decoder_stack';
import type { CausalLMOptions, LayerKind } from '../causal_lm';
import type { GraniteConfig } from './config';
import { GraniteMLP } from './mlp';

/** One pre-norm block: attention, then the gated MLP, each branch × `residual_multiplier` before its residual add. */
export class GraniteDecoderLayer extends Module implements CachingDecoderLayer {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: CausalSelfAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: GraniteMLP;
  readonly kind: LayerKind = 'attention';
  private readonly residualMultiplier: number;

  constructor(cfg: GraniteConfig) {
    super();
    this.residualMultiplier = cfg.residual_multiplier;
    this.input_layernorm = new RMSNorm(cfg.hidden_size, cfg.rms_norm_eps);
    this.self_attn = new CausalSelfAttention({
      hiddenSize: cfg.hidden_size,
      numHeads: cfg.num_attention_heads,
      numKeyValueHeads: cfg.num_key_value_heads,
      headDim: cfg.head_dim,
      bias: cfg.attention_bias,
      scale: cfg.attention_multiplier,
    });
    this.post_attention_layernorm = new RMSNorm(cfg.hidden_size, cfg.rms_norm_eps);
    this.mlp = new GraniteMLP({
      hiddenSize: cfg.hidden_size,
      intermediateSize: cfg.intermediate_size,
      activation: cfg.hidden_act,
      bias: cfg.mlp_bias,
    });
  }

  makeCache(_batch: number, length = 0): LayerCache {
    return new KVCache(length);
  }

  forward(x: tf.Tensor, ctx: LayerContext, cache?: LayerCache): tf.Tensor {
    if (cache !== undefined && !(cache instanceof KVCache)) {
      throw new TypeError('An attention layer was given a Mamba cache; the cache does not match the model.');
    }
    if (ctx.attention === undefined) throw new Error('An attention layer was run without an attention context.');
    const attention = ctx.attention;
    return tf.tidy(() => {
      const attended = this.self_attn.forward(this.input_layernorm.forward(x), attention, cache);
      const h = tf.add(x, tf.mul(attended, this.residualMultiplier));
      const ffn = this.mlp.forward(this.post_attention_layernorm.forward(h));
      return tf.add(h, tf.mul(ffn, this.residualMultiplier));
    });
  }
}

/** The `model.` subtree of the checkpoint: embeddings, layers, final norm. */
export class GraniteBackbone extends Module implements DecoderBackbone {
  readonly embed_tokens: Embedding;
  readonly layers: GraniteDecoderLayer[];
  readonly norm: RMSNorm;

  constructor(config: GraniteConfig) {
    super();
    this.embed_tokens = tokenEmbedding(config);
    this.layers = Array.from({ length: config.num_hidden_layers }, () => new GraniteDecoderLayer(config));
    this.norm = new RMSNorm(config.hidden_size, config.rms_norm_eps);
  }
}

/**
 * `GraniteForCausalLM`: the dense Granite transformer (transformers' `granite` model type). Names
 * equal the checkpoint keys (`model.layers.3.mlp.gate_proj.weight`), so loading is a strict tree walk.
 */
export class GraniteForCausalLM extends DecoderOnlyLM<GraniteConfig, GraniteBackbone> {
  constructor(config: GraniteConfig, options: CausalLMOptions = {}) {
    super(config, new GraniteBackbone(config), options);
  }

  protected scaling() {
    const config = this.config;
    return {
      embeddingMultiplier: config.embedding_multiplier,
      logitsScaling: config.logits_scaling,
      rope: { headDim: config.head_dim, theta: config.rope_theta },
    };
  }
}
