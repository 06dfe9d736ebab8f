import * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, RMSNorm, type InitScheme } from '@graniteflow/core';
import { HybridCache } from '../../cache/hybrid_cache';
import type { AttentionContext } from './attention';
import { usesRope, headDim, type GraniteMoeHybridConfig } from './config';
import { GraniteMoeHybridDecoderLayer, type LayerContext } from './decoder_layer';
import { ropeAngles } from './rope';

/** Options of {@link GraniteMoeHybridForCausalLM.forward}. */
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
  /** [B, T or 1, vocab_size], already divided by `logits_scaling`. */
  logits?: tf.Tensor3D;
  /** [layers + 1] × [B, T, H]: embeddings × multiplier, then the output of each layer. */
  hiddenStates?: tf.Tensor3D[];
  /** One [B·T, E] per MoE layer, in layer order (`options.routerLogits`). */
  routerLogits?: tf.Tensor2D[];
}

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

/** Options of the {@link GraniteMoeHybridForCausalLM} constructor. */
export interface CausalLMOptions {
  /**
   * What weights read as until assigned (loading assigns them all): `'hf'` (default) as
   * transformers initializes a new `GraniteMoeHybridForCausalLM` (normal with `initializer_range`
   * for linear, conv, embedding and expert weights, the padding row and biases zero, norms one,
   * Mamba-2's `A_log` = log(1…heads), `D` and `dt_bias` one), `'zeros'`, or a function.
   * Nothing is allocated until a weight is first read.
   */
  init?: InitScheme;
  /** Seed of the random initializers, for a reproducible new model (default: a fresh draw). */
  seed?: number;
}

/**
 * `GraniteMoeHybridForCausalLM`: the Granite 4.0 hybrid language model
 * (model guide: The forward pass). Parameter names equal the checkpoint keys
 * (`model.layers.3.mamba.A_log`), so loading is a strict tree walk.
 */
export class GraniteMoeHybridForCausalLM extends Module {
  readonly model: GraniteMoeHybridModel;
  /** Absent when the head is tied to `model.embed_tokens.weight` (the released models). */
  readonly lm_head?: Linear;

  private readonly hasAttention: boolean;

  constructor(
    readonly config: GraniteMoeHybridConfig,
    options: CausalLMOptions = {},
  ) {
    super();
    this.hasAttention = config.layer_types.includes('attention');
    this.model = new GraniteMoeHybridModel(config);
    if (!config.tie_word_embeddings) this.lm_head = new Linear(config.hidden_size, config.vocab_size);
    this.initialize(options.init ?? 'hf', { std: config.initializer_range, seed: options.seed, lazy: true });
  }

  /**
   * An empty cache for `batch` sequences, one entry per layer. `options.length`: the positions it
   * is expected to hold (prompt + new tokens), so the KV caches allocate that once instead of
   * growing by doubling (they still grow past it).
   */
  makeCache(batch = 1, options: { length?: number } = {}): HybridCache {
    return new HybridCache(
      this.model.layers.map((l) => l.makeCache(batch, options.length)),
      batch,
    );
  }

  /** Runs input ids [B, T] (int32) through the model, continuing from `options.cache` if given. */
  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): ForwardOutput {
    const { cache, attentionMask } = options;
    const [batch, time] = inputIds.shape;
    if (cache && cache.batchSize !== batch) {
      throw new RangeError(`The cache holds ${cache.batchSize} sequences but the input has ${batch}.`);
    }
    if (attentionMask && (attentionMask.shape[0] !== batch || attentionMask.shape[1] !== time)) {
      throw new RangeError(`attentionMask must be [${batch}, ${time}] like the input ids, got [${attentionMask.shape}].`);
    }
    const cfg = this.config;
    const wantHidden = options.hiddenStates ?? false;
    const routerLogits: tf.Tensor2D[] = [];
    const run = () =>
      tf.tidy(() => {
        const mask = attentionMask ? (tf.cast(attentionMask, 'float32') as tf.Tensor2D) : null;
        const ctx: LayerContext = {
          // Only models with attention layers need the [B, 1, 1, T, S] mask (and RoPE angles).
          attention: this.hasAttention ? this.attentionContext(batch, time, cache, mask) : undefined,
          paddingMask: mask,
          routerLogits: options.routerLogits ? routerLogits : undefined,
        };
        let x = tf.mul(this.model.embed_tokens.forward(inputIds), cfg.embedding_multiplier) as tf.Tensor3D;
        const hidden: tf.Tensor3D[] = wantHidden ? [x] : [];
        this.model.layers.forEach((layer, i) => {
          const next = layer.forward(x, ctx, cache?.layers[i]) as tf.Tensor3D;
          // The tidy would keep every layer's output to its end: 40 of them for one chunk of H-Micro.
          if (!wantHidden) x.dispose();
          x = next;
          if (wantHidden) hidden.push(x);
        });
        cache?.advance(time, mask);
        const out: { logits?: tf.Tensor3D; hidden: tf.Tensor3D[] } = { hidden };
        const which = options.logits ?? 'all';
        if (which !== 'none') {
          const kept = which === 'last' ? tf.slice(x, [0, time - 1, 0], [batch, 1, cfg.hidden_size]) : x;
          out.logits = this.logitsOf(this.model.norm.forward(kept) as tf.Tensor3D);
        }
        return out;
      });
    let result: ReturnType<typeof run>;
    try {
      result = run();
    } catch (err) {
      tf.dispose(routerLogits); // kept by the layers, so the tidy does not free them
      throw err;
    }
    return {
      logits: result.logits,
      hiddenStates: wantHidden ? result.hidden : undefined,
      routerLogits: options.routerLogits ? routerLogits : undefined,
    };
  }

  /** Normed hidden states [B, T, H] → logits [B, T, V] ÷ logits_scaling. */
  private logitsOf(h: tf.Tensor3D): tf.Tensor3D {
    const scores = this.lm_head ? this.lm_head.forward(h) : this.model.embed_tokens.attend(h);
    return tf.div(scores, this.config.logits_scaling) as tf.Tensor3D;
  }

  /** Padding mask of every cached and new key (causality is the attention kernel's), and RoPE angles if used. */
  private attentionContext(batch: number, time: number, cache: HybridCache | undefined, mask: tf.Tensor2D | null): AttentionContext {
    const past = cache?.seqLength ?? 0;
    const pastMask = cache?.mask ?? null;
    const keyMask =
      mask || pastMask
        ? (tf.concat([pastMask ?? tf.ones([batch, past]), mask ?? tf.ones([batch, time])], 1) as tf.Tensor2D) // [B, S]
        : null;
    const ctx: AttentionContext = { keyMask };
    if (usesRope(this.config)) {
      // Positions count real tokens only, as HF builds position_ids = cumsum(mask) − 1.
      const base = pastMask ? tf.sum(pastMask, 1, true) : tf.fill([batch, 1], past);
      const offsets = mask ? tf.sub(tf.cumsum(mask, 1), 1) : tf.tile(tf.reshape(tf.range(0, time), [1, time]), [batch, 1]);
      const positions = tf.maximum(tf.add(base, offsets), 0) as tf.Tensor2D;
      ctx.rope = ropeAngles(positions, headDim(this.config), this.config.rope_theta);
    }
    return ctx;
  }
}
