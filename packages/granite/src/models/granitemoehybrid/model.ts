import type * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, RMSNorm } from '@graniteflow/core';
import { HybridCache } from '../../cache/hybrid_cache';
import { runDecoderStack, type DecoderStack } from '../../layers/decoder_stack';
import type { CausalLM, CausalLMOptions, ForwardOptions, ForwardOutput, LayerKind } from '../causal_lm';
import { usesRope, headDim, type GraniteMoeHybridConfig } from './config';
import { GraniteMoeHybridDecoderLayer } from './decoder_layer';

/** The `model.` subtree of the checkpoint: embeddings, layers, final norm. */
export class GraniteMoeHybridModel extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: GraniteMoeHybridDecoderLayer[];
  readonly norm: RMSNorm;

  constructor(readonly config: GraniteMoeHybridConfig) {
    super();
    const pad = config.pad_token_id;
    this.embed_tokens = new Embedding(config.vocab_size, config.hidden_size, {
      tiedHead: config.tie_word_embeddings,
      paddingIdx: pad !== null && pad < config.vocab_size ? pad : undefined,
    });
    this.layers = config.layer_types.map((t) => new GraniteMoeHybridDecoderLayer(config, t));
    this.norm = new RMSNorm(config.hidden_size, config.rms_norm_eps);
  }
}

/**
 * `GraniteMoeHybridForCausalLM`: the Granite 4.0 hybrid language model
 * (model guide: The forward pass). Parameter names equal the checkpoint keys
 * (`model.layers.3.mamba.A_log`), so loading is a strict tree walk.
 */
export class GraniteMoeHybridForCausalLM extends Module implements CausalLM<GraniteMoeHybridConfig> {
  readonly model: GraniteMoeHybridModel;
  /** Absent when the head is tied to `model.embed_tokens.weight` (the released models). */
  readonly lm_head?: Linear;
  readonly layerKinds: readonly LayerKind[];

  constructor(
    readonly config: GraniteMoeHybridConfig,
    options: CausalLMOptions = {},
  ) {
    super();
    this.layerKinds = [...config.layer_types];
    this.model = new GraniteMoeHybridModel(config);
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
      hasAttention: this.layerKinds.includes('attention'),
      rope: usesRope(config) ? { headDim: headDim(config), theta: config.rope_theta } : undefined,
    };
  }

  makeCache(batch = 1, options: { length?: number } = {}): HybridCache {
    return new HybridCache(
      this.model.layers.map((l) => l.makeCache(batch, options.length)),
      batch,
    );
  }

  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput {
    return runDecoderStack(this.stack, inputIds, options);
  }
}
