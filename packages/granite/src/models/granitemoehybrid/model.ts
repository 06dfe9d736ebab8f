import { type Embedding, Module, RMSNorm } from '@graniteflow/core';
import { DecoderOnlyLM, tokenEmbedding, type DecoderBackbone } from '../../layers/decoder_only_lm';
import type { CausalLMOptions } from '../causal_lm';
import { usesRope, headDim, type GraniteMoeHybridConfig } from './config';
import { GraniteMoeHybridDecoderLayer } from './decoder_layer';

/** The `model.` subtree of the checkpoint: embeddings, layers, final norm. */
export class GraniteMoeHybridModel extends Module implements DecoderBackbone {
  readonly embed_tokens: Embedding;
  readonly layers: GraniteMoeHybridDecoderLayer[];
  readonly norm: RMSNorm;

  constructor(readonly config: GraniteMoeHybridConfig) {
    super();
    this.embed_tokens = tokenEmbedding(config);
    this.layers = config.layer_types.map((t) => new GraniteMoeHybridDecoderLayer(config, t));
    this.norm = new RMSNorm(config.hidden_size, config.rms_norm_eps);
  }
}

/**
 * `GraniteMoeHybridForCausalLM`: the Granite 4.0 hybrid language model
 * (model guide: The forward pass). Parameter names equal the checkpoint keys
 * (`model.layers.3.mamba.A_log`), so loading is a strict tree walk. The head is tied to
 * `model.embed_tokens.weight` in the released models.
 */
export class GraniteMoeHybridForCausalLM extends DecoderOnlyLM<GraniteMoeHybridConfig, GraniteMoeHybridModel> {
  constructor(config: GraniteMoeHybridConfig, options: CausalLMOptions = {}) {
    super(config, new GraniteMoeHybridModel(config), options);
  }

  protected scaling() {
    const config = this.config;
    return {
      embeddingMultiplier: config.embedding_multiplier,
      logitsScaling: config.logits_scaling,
      rope: usesRope(config) ? { headDim: headDim(config), theta: config.rope_theta } : undefined,
    };
  }
}
