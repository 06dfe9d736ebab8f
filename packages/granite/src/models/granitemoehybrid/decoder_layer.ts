import * as tf from '@tensorflow/tfjs-core';
import { Module, RMSNorm } from '@graniteflow/core';
import { Mamba2Mixer, MambaCache, type Mamba2Config } from '@graniteflow/ops-mamba';
import { SharedMLP, SparseMoE } from '@graniteflow/ops-moe';
import { KVCache } from '../../cache/kv_cache';
import type { LayerCache } from '../../cache/hybrid_cache';
import { CausalSelfAttention } from '../../layers/attention';
import type { CachingDecoderLayer } from '../../layers/decoder_only_lm';
import type { LayerContext } from '../../layers/decoder_stack';
import { headDim, useMoe, type GraniteMoeHybridConfig, type LayerType } from './config';

/** The Mamba-2 mixer settings of a Granite config. */
export function mambaConfig(cfg: GraniteMoeHybridConfig): Mamba2Config {
  return {
    hiddenSize: cfg.hidden_size,
    numHeads: cfg.mamba_n_heads,
    headDim: cfg.mamba_d_head,
    stateSize: cfg.mamba_d_state,
    nGroups: cfg.mamba_n_groups,
    convKernel: cfg.mamba_d_conv,
    chunkSize: cfg.mamba_chunk_size,
    eps: cfg.rms_norm_eps,
    convBias: cfg.mamba_conv_bias,
    projBias: cfg.mamba_proj_bias,
    timeStepLimit: cfg.time_step_limit,
    // HF's gated norm spans the whole inner width whatever mamba_n_groups is (model guide, P12).
    normGroups: 1,
  };
}

/**
 * One pre-norm block (model guide: The forward pass): a Mamba-2 or attention mixer, then the shared
 * MLP plus the routed experts, each branch scaled by `residual_multiplier` before its residual add.
 */
export class GraniteMoeHybridDecoderLayer extends Module implements CachingDecoderLayer {
  readonly input_layernorm: RMSNorm;
  readonly mamba?: Mamba2Mixer;
  readonly self_attn?: CausalSelfAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly shared_mlp: SharedMLP;
  readonly block_sparse_moe?: SparseMoE;
  private readonly residualMultiplier: number;

  constructor(
    cfg: GraniteMoeHybridConfig,
    readonly layerType: LayerType,
  ) {
    super();
    this.residualMultiplier = cfg.residual_multiplier;
    this.input_layernorm = new RMSNorm(cfg.hidden_size, cfg.rms_norm_eps);
    if (layerType === 'mamba') this.mamba = new Mamba2Mixer(mambaConfig(cfg));
    else {
      this.self_attn = new CausalSelfAttention({
        hiddenSize: cfg.hidden_size,
        numHeads: cfg.num_attention_heads,
        numKeyValueHeads: cfg.num_key_value_heads,
        headDim: headDim(cfg),
        bias: cfg.attention_bias,
        scale: cfg.attention_multiplier,
      });
    }
    this.post_attention_layernorm = new RMSNorm(cfg.hidden_size, cfg.rms_norm_eps);
    this.shared_mlp = new SharedMLP({
      hiddenSize: cfg.hidden_size,
      sharedIntermediateSize: cfg.shared_intermediate_size,
      activation: cfg.hidden_act,
    });
    if (useMoe(cfg)) {
      this.block_sparse_moe = new SparseMoE({
        hiddenSize: cfg.hidden_size,
        intermediateSize: cfg.intermediate_size,
        numExperts: cfg.num_local_experts,
        topK: cfg.num_experts_per_tok,
      });
    }
  }

  get kind(): LayerType {
    return this.layerType;
  }

  /** An empty cache of the right kind for this layer; `length`: positions it is expected to hold. */
  makeCache(batch: number, length = 0): LayerCache {
    return this.mamba ? this.mamba.makeCache(batch) : new KVCache(length);
  }

  /** x [B, T, H] → [B, T, H]; updates `cache` in place when given. */
  forward(x: tf.Tensor, ctx: LayerContext, cache?: LayerCache): tf.Tensor {
    return tf.tidy(() => {
      const h = this.input_layernorm.forward(x);
      let mixed: tf.Tensor;
      if (this.mamba) {
        if (cache !== undefined && !(cache instanceof MambaCache)) {
          throw new TypeError('A Mamba layer was given an attention cache; the cache does not match the model.');
        }
        mixed = this.mamba.forward(h, { cache, mask: ctx.paddingMask ?? undefined });
      } else {
        if (cache !== undefined && !(cache instanceof KVCache)) {
          throw new TypeError('An attention layer was given a Mamba cache; the cache does not match the model.');
        }
        if (ctx.attention === undefined) throw new Error('An attention layer was run without an attention context.');
        mixed = this.self_attn!.forward(h, ctx.attention, cache);
      }
      const afterMixer = tf.add(x, tf.mul(mixed, this.residualMultiplier));
      const g = this.post_attention_layernorm.forward(afterMixer);
      let ffn = this.shared_mlp.forward(g);
      if (this.block_sparse_moe && ctx.routerLogits) {
        const { output, routerLogits } = this.block_sparse_moe.forwardWithRouterLogits(g);
        ctx.routerLogits.push(tf.keep(routerLogits));
        ffn = tf.add(ffn, output);
      } else if (this.block_sparse_moe) {
        ffn = tf.add(ffn, this.block_sparse_moe.forward(g));
      }
      return tf.add(afterMixer, tf.mul(ffn, this.residualMultiplier));
    });
  }
}
