import { parseConfig, type GraniteMoeHybridConfig } from './config';

/**
 * Configs of the released Granite 4.0 models (model guide: Released models), for sizing, `inspect`
 * and random-weight benchmarks. Loading a checkpoint always reads its own config.json; the few values
 * no published config confirms (H-Small's attention layer positions, for one) are the likely ones and
 * only matter when a preset is used without a checkpoint.
 */
const SHARED = {
  model_type: 'granitemoehybrid',
  vocab_size: 100352,
  hidden_act: 'silu',
  rms_norm_eps: 1e-5,
  embedding_multiplier: 12,
  tie_word_embeddings: true,
  bos_token_id: 100257,
  eos_token_id: 100257,
  pad_token_id: 100256,
  mamba_d_state: 128,
  mamba_n_groups: 1,
  mamba_d_conv: 4,
  mamba_expand: 2,
  mamba_chunk_size: 256,
  mamba_conv_bias: true,
  mamba_proj_bias: false,
  attention_bias: false,
  rope_theta: 10000,
  torch_dtype: 'bfloat16',
};

function hybridLayers(count: number, attention: number[]): string[] {
  return Array.from({ length: count }, (_, i) => (attention.includes(i) ? 'attention' : 'mamba'));
}

const RAW_PRESETS = {
  'granite-4.0-h-small': {
    ...SHARED,
    hidden_size: 4096,
    num_hidden_layers: 40,
    layer_types: hybridLayers(40, [5, 15, 25, 35]),
    num_attention_heads: 32,
    num_key_value_heads: 8,
    attention_multiplier: 0.0078125,
    position_embedding_type: 'nope',
    mamba_n_heads: 128,
    num_local_experts: 72,
    num_experts_per_tok: 10,
    intermediate_size: 768,
    shared_intermediate_size: 1536,
    residual_multiplier: 0.22,
    logits_scaling: 16,
    max_position_embeddings: 131072,
  },
  'granite-4.0-h-tiny': {
    ...SHARED,
    hidden_size: 1536,
    num_hidden_layers: 40,
    layer_types: hybridLayers(40, [5, 15, 25, 35]),
    num_attention_heads: 12,
    num_key_value_heads: 4,
    attention_multiplier: 0.0078125,
    position_embedding_type: 'nope',
    mamba_n_heads: 48,
    num_local_experts: 64,
    num_experts_per_tok: 6,
    intermediate_size: 512,
    shared_intermediate_size: 1024,
    residual_multiplier: 0.22,
    logits_scaling: 6,
    max_position_embeddings: 131072,
  },
  'granite-4.0-h-micro': {
    ...SHARED,
    hidden_size: 2048,
    num_hidden_layers: 40,
    layer_types: hybridLayers(40, [5, 15, 25, 35]),
    num_attention_heads: 32,
    num_key_value_heads: 8,
    attention_multiplier: 0.015625,
    position_embedding_type: 'nope',
    mamba_n_heads: 64,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 8192,
    shared_intermediate_size: 8192,
    residual_multiplier: 0.22,
    logits_scaling: 8,
    max_position_embeddings: 131072,
  },
  'granite-4.0-h-1b': {
    ...SHARED,
    hidden_size: 1536,
    num_hidden_layers: 40,
    layer_types: hybridLayers(40, [5, 15, 25, 35]),
    num_attention_heads: 12,
    num_key_value_heads: 4,
    attention_multiplier: 0.0078125,
    position_embedding_type: 'nope',
    mamba_n_heads: 48,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 4096,
    shared_intermediate_size: 4096,
    residual_multiplier: 0.22,
    logits_scaling: 6,
    max_position_embeddings: 131072,
  },
  'granite-4.0-h-350m': {
    ...SHARED,
    hidden_size: 768,
    num_hidden_layers: 32,
    layer_types: hybridLayers(32, [10, 13, 17, 27]),
    num_attention_heads: 12,
    num_key_value_heads: 4,
    attention_multiplier: 0.015625,
    position_embedding_type: 'nope',
    mamba_n_heads: 48,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 2048,
    shared_intermediate_size: 2048,
    residual_multiplier: 0.246,
    logits_scaling: 3,
    max_position_embeddings: 32768,
  },
  // All-attention members of the family: same class, RoPE, dummy mamba_* fields.
  'granite-4.0-micro': {
    ...SHARED,
    hidden_size: 2560,
    num_hidden_layers: 40,
    layer_types: hybridLayers(
      40,
      Array.from({ length: 40 }, (_, i) => i),
    ),
    num_attention_heads: 40,
    num_key_value_heads: 8,
    attention_multiplier: 0.015625,
    position_embedding_type: 'rope',
    rope_theta: 10_000_000,
    mamba_n_heads: 128,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 8192,
    shared_intermediate_size: 8192,
    residual_multiplier: 0.22,
    logits_scaling: 10,
    max_position_embeddings: 131072,
  },
  'granite-4.0-1b': {
    ...SHARED,
    hidden_size: 2048,
    num_hidden_layers: 40,
    layer_types: hybridLayers(
      40,
      Array.from({ length: 40 }, (_, i) => i),
    ),
    num_attention_heads: 16,
    num_key_value_heads: 4,
    attention_multiplier: 0.0078125,
    position_embedding_type: 'rope',
    rope_theta: 10_000_000,
    mamba_n_heads: 128,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 4096,
    shared_intermediate_size: 4096,
    residual_multiplier: 0.22,
    logits_scaling: 8,
    max_position_embeddings: 131072,
  },
  'granite-4.0-350m': {
    ...SHARED,
    hidden_size: 1024,
    num_hidden_layers: 28,
    layer_types: hybridLayers(
      28,
      Array.from({ length: 28 }, (_, i) => i),
    ),
    num_attention_heads: 16,
    num_key_value_heads: 4,
    attention_multiplier: 0.015625,
    position_embedding_type: 'rope',
    rope_theta: 10_000_000,
    mamba_n_heads: 128,
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: 2048,
    shared_intermediate_size: 2048,
    residual_multiplier: 0.263,
    logits_scaling: 4,
    max_position_embeddings: 32768,
  },
} as const;

/** Names of the released models with a preset. @useDeclaredType */
export type PresetName = keyof typeof RAW_PRESETS;

export const PRESET_NAMES = Object.keys(RAW_PRESETS) as PresetName[];

/** The config of a released model, e.g. `preset('granite-4.0-h-tiny')`. Accepts `ibm-granite/…` too. */
export function preset(name: string): GraniteMoeHybridConfig {
  const key = name.replace(/^ibm-granite\//, '') as PresetName;
  if (!Object.hasOwn(RAW_PRESETS, key)) {
    throw new Error(`No preset named "${name}"; known: ${PRESET_NAMES.join(', ')}.`);
  }
  return parseConfig(JSON.parse(JSON.stringify(RAW_PRESETS[key])), `preset ${key}`);
}
