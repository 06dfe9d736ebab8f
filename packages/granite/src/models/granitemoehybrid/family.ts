import type { ModelFamily } from '../model_family';
import { headDim, parseConfig, useMoe, type GraniteMoeHybridConfig } from './config';
import { convertWeights } from './convert_weights';
import { GraniteMoeHybridForCausalLM } from './model';
import { PRESET_NAMES, preset } from './presets';
import { granitemoehybridSizing } from './sizing';

/** How the attention layers know positions, in words: "nope" is Granite 4.0-H's "no positional embedding". */
function positionsOf(type: string | null | undefined): string {
  if (type === undefined || type === null || type === 'nope') return 'no position embeddings (NoPE)';
  if (type === 'rope') return 'rotary position embeddings (RoPE)';
  return `position embeddings "${type}"`;
}

/** `granitemoehybrid`: IBM Granite 4.0, the hybrid H models and the all-attention ones. */
export const family: ModelFamily<GraniteMoeHybridConfig> = {
  modelType: 'granitemoehybrid',
  description: 'IBM Granite 4.0: hybrid Mamba-2 / attention, with or without experts',
  architecture: 'GraniteMoeHybridForCausalLM',
  parseConfig,
  createModel: (config, options) => new GraniteMoeHybridForCausalLM(config, options),
  convertWeights,
  configJson(config) {
    // transformers reads an unbounded time_step_limit as null.
    const { time_step_limit: limit, ...rest } = config;
    return { ...rest, time_step_limit: [limit[0], Number.isFinite(limit[1]) ? limit[1] : null] };
  },
  sizing: granitemoehybridSizing,
  layerKinds: (config) => [...config.layer_types],
  describe: (c) => [
    [
      'attention',
      `${c.num_attention_heads} query / ${c.num_key_value_heads} key-value heads of ${headDim(c)}, ${positionsOf(c.position_embedding_type)}`,
    ],
    [
      'mamba',
      `${c.mamba_n_heads} heads × ${c.mamba_d_head}, d_state ${c.mamba_d_state}, n_groups ${c.mamba_n_groups}, d_conv ${c.mamba_d_conv}, expand ${c.mamba_expand}, chunk ${c.mamba_chunk_size}`,
    ],
    [
      'feed-forward',
      useMoe(c)
        ? `MoE: ${c.num_local_experts} experts (top ${c.num_experts_per_tok}) of ${c.intermediate_size} + shared MLP of ${c.shared_intermediate_size}`
        : `dense: shared MLP of ${c.shared_intermediate_size}`,
    ],
  ],
  routedExperts: (config) =>
    useMoe(config)
      ? { numExperts: config.num_local_experts, topK: config.num_experts_per_tok, auxLossCoef: config.router_aux_loss_coef }
      : null,
  presetNames: PRESET_NAMES,
  preset,
};
