import type * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, type RMSNorm } from '@graniteflow/core';
import { HybridCache, type LayerCache } from '../cache/hybrid_cache';
import type { CausalLM, CausalLMConfig, CausalLMOptions, ForwardOptions, ForwardOutput, LayerKind } from '../models/causal_lm';
import { runDecoderStack, type DecoderLayer, type DecoderStack } from './decoder_stack';

/** A decoder layer that is a module, says what it caches, and makes its own cache. */
export interface CachingDecoderLayer extends Module, DecoderLayer {
  readonly kind: LayerKind;
  /** An empty cache of the right kind for this layer; `length`: positions it is expected to hold. */
  makeCache(batch: number, length?: number): LayerCache;
}

/** The `model.` subtree of a checkpoint: embeddings, layers, final norm (names as the checkpoint's). */
export interface DecoderBackbone extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: readonly CachingDecoderLayer[];
  readonly norm: RMSNorm;
}

/** The token embedding of a config: tied to the head when it says so, the padding row (when in range) kept zero. */
export function tokenEmbedding(config: CausalLMConfig): Embedding {
  const pad = config.pad_token_id;
  return new Embedding(config.vocab_size, config.hidden_size, {
    tiedHead: config.tie_word_embeddings,
    paddingIdx: pad !== null && pad < config.vocab_size ? pad : undefined,
  });
}

/**
 * What a decoder-only `XForCausalLM` of any family is: its `model.` backbone, an `lm_head` unless
 * tied, and the forward pass of {@link runDecoderStack}. A family's model class passes its
 * backbone and says how it scales and positions ({@link DecoderOnlyLM.scaling}).
 */
export abstract class DecoderOnlyLM<C extends CausalLMConfig, B extends DecoderBackbone> extends Module implements CausalLM<C> {
  /** Absent when the head is tied to `model.embed_tokens.weight`. */
  readonly lm_head?: Linear;
  /** What each layer caches, as the layers say. */
  readonly layerKinds: readonly LayerKind[];

  constructor(
    readonly config: C,
    readonly model: B,
    options: CausalLMOptions = {},
  ) {
    super();
    this.layerKinds = model.layers.map((l) => l.kind);
    if (!config.tie_word_embeddings) this.lm_head = new Linear(config.hidden_size, config.vocab_size);
    this.initialize(options.init ?? 'hf', { std: config.initializer_range, seed: options.seed, lazy: true });
  }

  /** The embedding multiplier, the logits divisor and the RoPE settings (when the attention layers rotate). */
  protected abstract scaling(): Pick<DecoderStack, 'embeddingMultiplier' | 'logitsScaling' | 'rope'>;

  makeCache(batch = 1, options: { length?: number } = {}): HybridCache {
    return new HybridCache(
      this.model.layers.map((l) => l.makeCache(batch, options.length)),
      batch,
    );
  }

  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput {
    // The modules are read at each call, so a module swapped in later is the one used.
    const stack: DecoderStack = {
      embedTokens: this.model.embed_tokens,
      layers: this.model.layers,
      norm: this.model.norm,
      lmHead: this.lm_head,
      hiddenSize: this.config.hidden_size,
      hasAttention: this.layerKinds.includes('attention'),
      ...this.scaling(),
    };
    return runDecoderStack(stack, inputIds, options);
  }
}
