import type { GatedActivation } from '@graniteflow/ops-moe';
import type { CausalLMConfig } from '../causal_lm';
import { ConfigError, ConfigReader, shown } from '../config_reader';

/**
 * `config.json` of a `granite` checkpoint (transformers' `GraniteForCausalLM`: the dense Granite
 * 3.x transformer), with the Hugging Face keys verbatim. Llama's layout plus Granite's four
 * multipliers; rotary positions always.
 */
export interface GraniteConfig extends CausalLMConfig {
  model_type: 'granite';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** `head_dim` when the file has it, else hidden_size / num_attention_heads. */
  head_dim: number;
  hidden_act: GatedActivation;
  max_position_embeddings: number;
  initializer_range: number;
  rms_norm_eps: number;
  rope_theta: number;
  attention_bias: boolean;
  mlp_bias: boolean;
  /** The embeddings are multiplied by this. */
  embedding_multiplier: number;
  /** Each branch is multiplied by this before its residual add. */
  residual_multiplier: number;
  /** The softmax scale itself (replaces 1/sqrt(head_dim)). */
  attention_multiplier: number;
  /** Logits are divided by this. */
  logits_scaling: number;
  tie_word_embeddings: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  torch_dtype: string | null;
}

/** transformers' `GraniteConfig` defaults. */
const DEFAULTS = {
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  initializer_range: 0.02,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  attention_bias: false,
  mlp_bias: false,
  embedding_multiplier: 1.0,
  residual_multiplier: 1.0,
  attention_multiplier: 1.0,
  logits_scaling: 1.0,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  pad_token_id: null,
} as const;

/** The largest value of each size field accepted (far above any released model; see the hybrid family's limits). */
export const GRANITE_CONFIG_LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  intermediate_size: 1 << 18,
  num_hidden_layers: 1 << 12,
  num_attention_heads: 1 << 14,
  num_key_value_heads: 1 << 14,
  head_dim: 1 << 14,
  max_position_embeddings: 1 << 30,
} as const;

/** Scaled RoPE variants (linear, dynamic, yarn, llama3, …) change the angles: refused, not ignored. */
function checkRopeScaling(r: ConfigReader<typeof GRANITE_CONFIG_LIMITS>, raw: Record<string, unknown>): void {
  for (const key of ['rope_scaling', 'rope_parameters'] as const) {
    const v = raw[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v)) r.fail(key, `must be an object or null, got ${shown(v)}`);
    const type = (v as Record<string, unknown>).rope_type ?? (v as Record<string, unknown>).type ?? 'default';
    if (type !== 'default') r.fail(key, `asks for ${shown(type)} RoPE scaling; only plain RoPE ("default") is supported`);
  }
}

/**
 * Parses and validates a `granite` config.json object: missing keys take transformers' defaults,
 * unknown keys are dropped. Throws {@link ConfigError} naming the field.
 */
export function parseConfig(raw: unknown, source?: string): GraniteConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('(root)', 'must be a JSON object', source);
  const obj = raw as Record<string, unknown>;
  const r = new ConfigReader(obj, DEFAULTS, GRANITE_CONFIG_LIMITS, source);
  if (obj.model_type !== 'granite') r.fail('model_type', `is ${shown(obj.model_type)}; this loader handles "granite"`);
  checkRopeScaling(r, obj);
  const hidden = r.int('hidden_size', 1);
  const heads = r.int('num_attention_heads', 1);
  const kvHeads = obj.num_key_value_heads == null ? heads : r.int('num_key_value_heads', 1);
  if (obj.head_dim == null && hidden % heads !== 0) {
    r.fail('num_attention_heads', `(${heads}) must divide hidden_size (${hidden}) when there is no head_dim`);
  }
  if (obj.head_dim == null && hidden / heads > GRANITE_CONFIG_LIMITS.head_dim) {
    r.fail(
      'head_dim',
      `is absent, giving hidden_size / num_attention_heads = ${hidden / heads}, more than ${GRANITE_CONFIG_LIMITS.head_dim}`,
    );
  }
  const cfg: GraniteConfig = {
    model_type: 'granite',
    vocab_size: r.int('vocab_size', 1),
    hidden_size: hidden,
    intermediate_size: r.int('intermediate_size', 1),
    num_hidden_layers: r.int('num_hidden_layers', 1),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: obj.head_dim == null ? hidden / heads : r.int('head_dim', 1),
    hidden_act: r.activation('hidden_act'),
    max_position_embeddings: r.int('max_position_embeddings', 1),
    initializer_range: r.num('initializer_range'),
    rms_norm_eps: r.num('rms_norm_eps', { positive: true }),
    rope_theta: r.ropeTheta(),
    attention_bias: r.bool('attention_bias'),
    mlp_bias: r.bool('mlp_bias'),
    embedding_multiplier: r.num('embedding_multiplier'),
    residual_multiplier: r.num('residual_multiplier'),
    attention_multiplier: r.num('attention_multiplier', { positive: true }),
    logits_scaling: r.num('logits_scaling', { positive: true }),
    tie_word_embeddings: r.bool('tie_word_embeddings'),
    bos_token_id: r.optionalId('bos_token_id'),
    eos_token_id: r.eosTokenId(),
    pad_token_id: r.optionalId('pad_token_id'),
    torch_dtype: r.torchDtype(),
  };
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    r.fail('num_key_value_heads', `(${cfg.num_key_value_heads}) must divide num_attention_heads (${cfg.num_attention_heads})`);
  }
  if (cfg.head_dim % 2 !== 0) r.fail('head_dim', `must be even for rotary embeddings, got ${cfg.head_dim}`);
  if (cfg.initializer_range < 0) r.fail('initializer_range', `must be ≥ 0 (a standard deviation), got ${cfg.initializer_range}`);
  return cfg;
}
