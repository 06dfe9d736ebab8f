import type { GatedActivation } from '@graniteflow/ops-moe';
import type { CausalLMConfig } from '../causal_lm';
import { ConfigError, ConfigReader, shown } from '../config_reader';

export { ConfigError };

/**
 * `config.json` of a `granitemoehybrid` checkpoint, typed with the Hugging Face keys verbatim
 * (model guide: Configuration fields). {@link parseConfig} applies HF's documented defaults and
 * validates.
 */
export interface GraniteMoeHybridConfig extends CausalLMConfig {
  model_type: 'granitemoehybrid';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  /** One entry per layer. Alias in older configs: `layers_block_type`. */
  layer_types: LayerType[];
  num_attention_heads: number;
  num_key_value_heads: number;
  attention_bias: boolean;
  /** The softmax scale itself (replaces 1/sqrt(head_dim)). */
  attention_multiplier: number;
  /** RoPE is applied only when this equals `"rope"`; the H models use none. */
  position_embedding_type: string | null;
  rope_theta: number;
  max_position_embeddings: number;
  /** Of the shared MLP's gate (and the experts', which support only `"silu"`). */
  hidden_act: GatedActivation;
  rms_norm_eps: number;
  embedding_multiplier: number;
  residual_multiplier: number;
  /** Logits are divided by this. */
  logits_scaling: number;
  /** Routed experts per layer; 0 = dense (shared MLP only). */
  num_local_experts: number;
  num_experts_per_tok: number;
  intermediate_size: number;
  shared_intermediate_size: number;
  router_aux_loss_coef: number;
  /** Standard deviation of the normal initializers (weights of linear, conv, embedding and expert layers). */
  initializer_range: number;
  mamba_n_heads: number;
  /** Resolved from `"auto"` to (mamba_expand · hidden_size) / mamba_n_heads. */
  mamba_d_head: number;
  mamba_expand: number;
  mamba_d_state: number;
  mamba_n_groups: number;
  mamba_d_conv: number;
  mamba_chunk_size: number;
  mamba_conv_bias: boolean;
  mamba_proj_bias: boolean;
  /** (lo, hi) clamp of dt after softplus; (0, ∞) is a no-op. */
  time_step_limit: [number, number];
  tie_word_embeddings: boolean;
  bos_token_id: number | null;
  /** One id or several; generation stops on any. */
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  /** Storage dtype of the released weights (informational: graniteflow computes in float32). */
  torch_dtype: string | null;
}

/** Kinds of sequence mixer a layer can have. */
export type LayerType = 'mamba' | 'attention';

/**
 * HF `GraniteMoeHybridConfig` defaults (model guide: Configuration fields); released checkpoints
 * override many.
 */
const DEFAULTS = {
  vocab_size: 32000,
  hidden_size: 4096,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  attention_bias: false,
  attention_multiplier: 1.0,
  position_embedding_type: null,
  rope_theta: 10000.0,
  max_position_embeddings: 2048,
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  embedding_multiplier: 1.0,
  residual_multiplier: 1.0,
  logits_scaling: 1.0,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  intermediate_size: 11008,
  shared_intermediate_size: 1024,
  router_aux_loss_coef: 0.001,
  initializer_range: 0.02,
  mamba_n_heads: 128,
  mamba_expand: 2,
  mamba_d_state: 256,
  mamba_n_groups: 1,
  mamba_d_conv: 4,
  mamba_chunk_size: 256,
  mamba_conv_bias: true,
  mamba_proj_bias: false,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  pad_token_id: null,
  torch_dtype: null,
} as const;

/**
 * The largest value of each size field {@link parseConfig} accepts. They sit far above every
 * released model (the largest have about 160 layers, hidden sizes near 18k, vocabularies near 262k
 * and a few hundred experts), so no real checkpoint meets them, while a corrupt or hostile
 * config.json is refused by name before anything is sized from it (a million layers used to run
 * the process out of memory). Every size field is at least 1, except the expert counts and
 * `intermediate_size`, which are 0 in dense models.
 */
export const CONFIG_LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  num_hidden_layers: 1 << 12,
  num_attention_heads: 1 << 14,
  num_key_value_heads: 1 << 14,
  intermediate_size: 1 << 18,
  shared_intermediate_size: 1 << 18,
  num_local_experts: 1 << 12,
  num_experts_per_tok: 1 << 12,
  mamba_n_heads: 1 << 14,
  mamba_d_head: 1 << 16,
  mamba_expand: 64,
  mamba_d_state: 1 << 14,
  mamba_n_groups: 1 << 14,
  mamba_d_conv: 1 << 10,
  mamba_chunk_size: 1 << 16,
  max_position_embeddings: 1 << 30,
} as const;

type Raw = Record<string, unknown>;

/** Reads the fields of a raw config.json with this family's defaults and limits. */
class Reader extends ConfigReader<typeof CONFIG_LIMITS> {
  constructor(raw: Record<string, unknown>, source?: string) {
    super(raw, DEFAULTS, CONFIG_LIMITS, source);
  }
}

function parseLayerTypes(r: Reader, raw: Raw, layers: number): LayerType[] {
  const key = raw.layer_types != null ? 'layer_types' : 'layers_block_type';
  const v = raw[key];
  if (v == null) return Array<LayerType>(layers).fill('mamba');
  if (!Array.isArray(v)) r.fail(key, `must be a list of "mamba" / "attention", got ${shown(v)}`);
  if (v.length !== layers) {
    r.fail(key, `has ${v.length} entries but num_hidden_layers is ${layers}`);
  }
  v.forEach((t, i) => {
    if (t !== 'mamba' && t !== 'attention') {
      r.fail(key, `entry ${i} is ${shown(t)}; expected "mamba" or "attention"`);
    }
  });
  return v as LayerType[];
}

function parseTimeStepLimit(r: Reader, raw: Raw): [number, number] {
  const v = raw.time_step_limit;
  if (v == null) return [0, Infinity];
  if (!Array.isArray(v) || v.length !== 2) r.fail('time_step_limit', `must be [lo, hi], got ${shown(v)}`);
  const [lo, hi] = v.map((x) => (x === null || x === 'inf' || x === 'Infinity' ? Infinity : x));
  if (typeof lo !== 'number' || typeof hi !== 'number' || !(lo <= hi)) {
    r.fail('time_step_limit', `must be [lo, hi] with lo <= hi, got ${shown(v)}`);
  }
  return [lo, hi];
}

/**
 * Parses and validates a `config.json` object. Unknown keys are dropped; missing keys take HF's
 * defaults. Throws {@link ConfigError} naming the field.
 *
 * @param source named in errors (the config file path)
 */
export function parseConfig(raw: unknown, source?: string): GraniteMoeHybridConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('(root)', 'must be a JSON object', source);
  }
  const obj = raw as Raw;
  const r = new Reader(obj, source);
  const modelType = obj.model_type ?? 'granitemoehybrid';
  if (modelType !== 'granitemoehybrid') {
    r.fail('model_type', `is ${shown(modelType)}; this loader handles "granitemoehybrid"`);
  }
  const hidden = r.int('hidden_size', 1);
  const layers = r.int('num_hidden_layers', 1);
  const heads = r.int('num_attention_heads', 1);
  const kvHeads = obj.num_key_value_heads == null ? heads : r.int('num_key_value_heads', 1);
  const mambaHeads = r.int('mamba_n_heads', 1);
  const expand = r.int('mamba_expand', 1);
  const dHeadRaw = obj.mamba_d_head ?? 'auto';
  let dHead: number;
  if (dHeadRaw === 'auto') {
    if ((expand * hidden) % mambaHeads !== 0) {
      r.fail(
        'mamba_d_head',
        `is "auto" but mamba_expand·hidden_size = ${expand * hidden} is not divisible by mamba_n_heads = ${mambaHeads}`,
      );
    }
    dHead = (expand * hidden) / mambaHeads;
    if (dHead > CONFIG_LIMITS.mamba_d_head) {
      r.fail(
        'mamba_d_head',
        `is "auto", giving mamba_expand·hidden_size / mamba_n_heads = ${dHead}, more than ${CONFIG_LIMITS.mamba_d_head}`,
      );
    }
  } else {
    dHead = r.int('mamba_d_head', 1);
  }
  const cfg: GraniteMoeHybridConfig = {
    model_type: 'granitemoehybrid',
    vocab_size: r.int('vocab_size', 1),
    hidden_size: hidden,
    num_hidden_layers: layers,
    layer_types: parseLayerTypes(r, obj, layers),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    attention_bias: r.bool('attention_bias'),
    attention_multiplier: r.num('attention_multiplier', { positive: true }),
    position_embedding_type: r.optionalStr('position_embedding_type'),
    rope_theta: r.ropeTheta(),
    max_position_embeddings: r.int('max_position_embeddings', 1),
    hidden_act: r.activation('hidden_act'),
    rms_norm_eps: r.num('rms_norm_eps', { positive: true }),
    embedding_multiplier: r.num('embedding_multiplier'),
    residual_multiplier: r.num('residual_multiplier'),
    logits_scaling: r.num('logits_scaling', { positive: true }),
    num_local_experts: r.int('num_local_experts', 0),
    num_experts_per_tok: r.int('num_experts_per_tok', 0),
    intermediate_size: r.int('intermediate_size', 0),
    shared_intermediate_size: r.int('shared_intermediate_size', 1),
    router_aux_loss_coef: r.num('router_aux_loss_coef'),
    initializer_range: r.num('initializer_range'),
    mamba_n_heads: mambaHeads,
    mamba_d_head: dHead,
    mamba_expand: expand,
    mamba_d_state: r.int('mamba_d_state', 1),
    mamba_n_groups: r.int('mamba_n_groups', 1),
    mamba_d_conv: r.int('mamba_d_conv', 1),
    mamba_chunk_size: r.int('mamba_chunk_size', 1),
    mamba_conv_bias: r.bool('mamba_conv_bias'),
    mamba_proj_bias: r.bool('mamba_proj_bias'),
    time_step_limit: parseTimeStepLimit(r, obj),
    tie_word_embeddings: r.bool('tie_word_embeddings'),
    bos_token_id: r.optionalId('bos_token_id'),
    eos_token_id: r.eosTokenId(),
    pad_token_id: r.optionalId('pad_token_id'),
    torch_dtype: r.torchDtype(),
  };
  validate(cfg, r);
  return cfg;
}

function validate(cfg: GraniteMoeHybridConfig, r: Reader): void {
  if (cfg.initializer_range < 0) r.fail('initializer_range', `must be ≥ 0 (a standard deviation), got ${cfg.initializer_range}`);
  if (cfg.hidden_act !== 'silu' && cfg.num_local_experts > 0) {
    r.fail('hidden_act', `is "${cfg.hidden_act}"; the routed experts run SwiGLU only, so a model with experts needs "silu"`);
  }
  const hasAttention = cfg.layer_types.includes('attention');
  const hasMamba = cfg.layer_types.includes('mamba');
  if (hasAttention) {
    if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
      r.fail('num_attention_heads', `(${cfg.num_attention_heads}) must divide hidden_size (${cfg.hidden_size})`);
    }
    if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
      r.fail('num_key_value_heads', `(${cfg.num_key_value_heads}) must divide num_attention_heads (${cfg.num_attention_heads})`);
    }
  }
  if (hasMamba) {
    if (cfg.mamba_n_heads * cfg.mamba_d_head !== cfg.mamba_expand * cfg.hidden_size) {
      r.fail(
        'mamba_d_head',
        `× mamba_n_heads = ${cfg.mamba_n_heads * cfg.mamba_d_head} must equal mamba_expand × hidden_size = ${cfg.mamba_expand * cfg.hidden_size}`,
      );
    }
    if (cfg.mamba_n_heads % cfg.mamba_n_groups !== 0) {
      r.fail('mamba_n_groups', `(${cfg.mamba_n_groups}) must divide mamba_n_heads (${cfg.mamba_n_heads})`);
    }
  }
  if (cfg.num_local_experts > 0) {
    if (cfg.num_experts_per_tok < 1 || cfg.num_experts_per_tok > cfg.num_local_experts) {
      r.fail('num_experts_per_tok', `must be between 1 and num_local_experts (${cfg.num_local_experts}), got ${cfg.num_experts_per_tok}`);
    }
    if (cfg.intermediate_size < 1) r.fail('intermediate_size', 'must be >= 1 when num_local_experts > 0');
  }
}

/** Size of each attention head (there is no `head_dim` key in these configs). */
export function headDim(cfg: GraniteMoeHybridConfig): number {
  return cfg.hidden_size / cfg.num_attention_heads;
}

/** True when the feed-forward has routed experts (otherwise only the shared MLP). */
export function useMoe(cfg: GraniteMoeHybridConfig): boolean {
  return cfg.num_local_experts > 0;
}

/** True when attention layers apply rotary embeddings (only `position_embedding_type == "rope"`). */
export function usesRope(cfg: GraniteMoeHybridConfig): boolean {
  return cfg.position_embedding_type === 'rope';
}

/** Inner width of a Mamba mixer, Hm·P. */
export function mambaInnerSize(cfg: GraniteMoeHybridConfig): number {
  return cfg.mamba_n_heads * cfg.mamba_d_head;
}

/** Channels through the Mamba conv (x, B, C). */
export function mambaConvDim(cfg: GraniteMoeHybridConfig): number {
  return mambaInnerSize(cfg) + 2 * cfg.mamba_n_groups * cfg.mamba_d_state;
}
