import * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, RMSNorm } from '@graniteflow/core';
import type { GatedActivation } from '@graniteflow/ops-moe';
import { HybridCache, type LayerCache } from '../../cache/hybrid_cache';
import { KVCache } from '../../cache/kv_cache';
import { CausalSelfAttention } from '../../layers/attention';
import { runDecoderStack, type DecoderLayer, type DecoderStack, type LayerContext } from '../../layers/decoder_stack';
import type { CausalLM, CausalLMOptions, ForwardOptions, ForwardOutput, LayerKind } from '../causal_lm';
import type { GraniteConfig } from './config';
import { GraniteMLP } from './mlp';

/** One pre-norm block: attention, then the gated MLP, each branch × `residual_multiplier` before its residual add. */
export class GraniteDecoderLayer extends Module implements DecoderLayer {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: CausalSelfAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: GraniteMLP;
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
      activation: cfg.hidden_act as GatedActivation,
      bias: cfg.mlp_bias,
    });
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
export class GraniteBackbone extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: GraniteDecoderLayer[];
  readonly norm: RMSNorm;

  constructor(config: GraniteConfig) {
    super();
    const pad = config.pad_token_id;
    this.embed_tokens = new Embedding(config.vocab_size, config.hidden_size, {
      tiedHead: config.tie_word_embeddings,
      paddingIdx: pad !== null && pad < config.vocab_size ? pad : undefined,
    });
    this.layers = Array.from({ length: config.num_hidden_layers }, () => new GraniteDecoderLayer(config));
    this.norm = new RMSNorm(config.hidden_size, config.rms_norm_eps);
  }
}

/**
 * `GraniteForCausalLM`: the dense Granite transformer (transformers' `granite` model type). Names
 * equal the checkpoint keys (`model.layers.3.mlp.gate_proj.weight`), so loading is a strict tree walk.
 */
export class GraniteForCausalLM extends Module implements CausalLM<GraniteConfig> {
  readonly model: GraniteBackbone;
  /** Absent when the head is tied to `model.embed_tokens.weight`. */
  readonly lm_head?: Linear;
  readonly layerKinds: readonly LayerKind[];

  constructor(
    readonly config: GraniteConfig,
    options: CausalLMOptions = {},
  ) {
    super();
    this.layerKinds = Array<LayerKind>(config.num_hidden_layers).fill('attention');
    this.model = new GraniteBackbone(config);
    if (!config.tie_word_embeddings) this.lm_head = new Linear(config.hidden_size, config.vocab_size);
    this.initialize(options.init ?? 'hf', { std: config.initializer_range, seed: options.seed, lazy: true });
  }

  /** The modules the forward pass runs, read when it runs (so a module swapped in later is the one used). */
  private get stack(): DecoderStack {
    const config = this.config;
    return {
      embedTokens: this.model.embed_tokens,
      layers: this.model.layers,
      norm: this.model.norm,
      lmHead: this.lm_head,
      hiddenSize: config.hidden_size,
      embeddingMultiplier: config.embedding_multiplier,
      logitsScaling: config.logits_scaling,
      hasAttention: true,
      rope: { headDim: config.head_dim, theta: config.rope_theta },
    };
  }

  makeCache(batch = 1, options: { length?: number } = {}): HybridCache {
    return new HybridCache(
      this.model.layers.map(() => new KVCache(options.length ?? 0)),
      batch,
    );
  }

  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput {
    return runDecoderStack(this.stack, inputIds, options);
  }
}
