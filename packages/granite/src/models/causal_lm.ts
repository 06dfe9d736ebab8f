import type * as tf from '@tensorflow/tfjs-core';
import type { InitScheme, Module } from '@graniteflow/core';
import type { HybridCache } from '../cache/hybrid_cache';

/**
 * What every layer keeps between calls: a Mamba layer its conv and SSM state, an attention layer
 * its keys and values. Caches, snapshots and cache files are laid out by these.
 */
export type LayerKind = 'mamba' | 'attention';

/**
 * The `config.json` keys every supported family has, with the Hugging Face names and meanings.
 * A family's own config extends this; code outside a family's folder reads only these.
 */
export interface CausalLMConfig {
  readonly model_type: string;
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly num_hidden_layers: number;
  readonly max_position_embeddings: number;
  readonly tie_word_embeddings: boolean;
  /** Standard deviation of the normal initializers of a new model. */
  readonly initializer_range: number;
  readonly bos_token_id: number | null;
  /** One id or several; generation stops on any. */
  readonly eos_token_id: number | number[] | null;
  readonly pad_token_id: number | null;
  /** Storage dtype of the released weights (informational: graniteflow computes in float32). */
  readonly torch_dtype: string | null;
}

/** Options of a model's `forward`. */
export interface ForwardOptions {
  /** Continue from (and update) this cache. */
  cache?: HybridCache;
  /** [B, T] for the new tokens: 1 = real, 0 = left padding. Omit when nothing is padded. */
  attentionMask?: tf.Tensor2D;
  /** Which positions get logits: every one, only the last (decoding), or none. Default `'all'`. */
  logits?: 'all' | 'last' | 'none';
  /** Also return the residual stream after the embeddings and after every layer. */
  hiddenStates?: boolean;
  /** Also return each MoE layer's router logits (for the load-balancing loss of training). */
  routerLogits?: boolean;
}

/** Result of a forward pass; the caller owns (and disposes) every tensor. */
export interface ForwardOutput {
  /** [B, T or 1, vocab_size], with the family's output scaling applied. */
  logits?: tf.Tensor3D;
  /** [layers + 1] × [B, T, H]: the scaled embeddings, then the output of each layer. */
  hiddenStates?: tf.Tensor3D[];
  /** One [B·T, E] per MoE layer, in layer order (`options.routerLogits`); empty for dense models. */
  routerLogits?: tf.Tensor2D[];
}

/** Options of a family's model constructor (and of `ModelFamily.createModel`). */
export interface CausalLMOptions {
  /**
   * What weights read as until assigned (loading assigns them all): `'hf'` (default) as
   * transformers initializes a new model of the family, `'zeros'`, or a function. Nothing is
   * allocated until a weight is first read.
   */
  init?: InitScheme;
  /** Seed of the random initializers, for a reproducible new model (default: a fresh draw). */
  seed?: number;
}

/**
 * A decoder-only language model of any family, as generation, serving, training, saving and the
 * CLI use it. Parameter names equal the checkpoint keys, so loading is a strict tree walk.
 */
export interface CausalLM<C extends CausalLMConfig = CausalLMConfig> extends Module {
  readonly config: C;
  /** What each layer caches, in layer order. */
  readonly layerKinds: readonly LayerKind[];
  /** Runs input ids [B, T] (int32) through the model, continuing from `options.cache` if given. */
  forward(inputIds: tf.Tensor2D, options?: ForwardOptions): ForwardOutput;
  /**
   * An empty cache for `batch` sequences, one entry per layer; `options.length`: the positions it
   * is expected to hold, so the KV caches allocate that once instead of growing by doubling.
   */
  makeCache(batch?: number, options?: { length?: number }): HybridCache;
}

/** The eos ids of a config as a list. */
export function eosTokenIds(cfg: Pick<CausalLMConfig, 'eos_token_id'>): number[] {
  const e = cfg.eos_token_id;
  return e === null ? [] : Array.isArray(e) ? e : [e];
}
