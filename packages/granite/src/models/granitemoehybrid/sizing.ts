import type { ModelSizing } from '../model_family';
import { headDim, mambaConvDim, mambaInnerSize, useMoe, type GraniteMoeHybridConfig, type LayerType } from './config';

/** Weights of a Linear layer `inFeatures → outFeatures` (core's Linear: [out, in] plus an optional bias). */
function linearParameters(inFeatures: number, outFeatures: number, bias: boolean): number {
  return inFeatures * outFeatures + (bias ? outFeatures : 0);
}

/**
 * Parameter counts by formula. Each term is the parameter shapes of one module of
 * `GraniteMoeHybridForCausalLM` (the tests check that both agree on every preset).
 */
function countParameters(cfg: GraniteMoeHybridConfig): { total: number; active: number } {
  const hidden = cfg.hidden_size;
  const mambaLayers = cfg.layer_types.filter((t) => t === 'mamba').length;
  const attentionLayers = cfg.num_hidden_layers - mambaLayers;
  // Mamba2Mixer: in_proj → [z, xBC, dt], depthwise conv1d, dt_bias / A_log / D, gated norm, out_proj.
  const inner = mambaInnerSize(cfg);
  const convDim = mambaConvDim(cfg);
  const heads = cfg.mamba_n_heads;
  const mamba =
    linearParameters(hidden, inner + convDim + heads, cfg.mamba_proj_bias) +
    convDim * cfg.mamba_d_conv +
    (cfg.mamba_conv_bias ? convDim : 0) +
    3 * heads +
    inner +
    linearParameters(inner, hidden, cfg.mamba_proj_bias);
  // Attention: q, k, v, o projections (no head_dim key: the heads split hidden_size).
  const queryWidth = cfg.num_attention_heads * headDim(cfg);
  const keyValueWidth = cfg.num_key_value_heads * headDim(cfg);
  const attention =
    attentionLayers === 0
      ? 0
      : linearParameters(hidden, queryWidth, cfg.attention_bias) +
        2 * linearParameters(hidden, keyValueWidth, cfg.attention_bias) +
        linearParameters(queryWidth, hidden, cfg.attention_bias);
  // Every layer: two RMSNorms, the shared gated MLP, and (MoE) the router plus stacked experts.
  const perExpert = 3 * hidden * cfg.intermediate_size;
  const experts = useMoe(cfg) ? hidden * cfg.num_local_experts + cfg.num_local_experts * perExpert : 0;
  const everyLayer = 2 * hidden + 3 * hidden * cfg.shared_intermediate_size + experts;
  const embeddings = cfg.vocab_size * hidden;
  const total =
    embeddings +
    hidden + // final norm
    (cfg.tie_word_embeddings ? 0 : embeddings) +
    cfg.num_hidden_layers * everyLayer +
    mambaLayers * mamba +
    attentionLayers * attention;
  const inactive = useMoe(cfg) ? cfg.num_hidden_layers * (cfg.num_local_experts - cfg.num_experts_per_tok) * perExpert : 0;
  return { total, active: total - inactive };
}

/** The parameters of one decoder layer of `type`, named from the layer (`mamba.in_proj.weight`). */
function layerParameterShapes(cfg: GraniteMoeHybridConfig, type: LayerType): [string, number[]][] {
  const out: [string, number[]][] = [];
  const hidden = cfg.hidden_size;
  const linear = (prefix: string, inFeatures: number, outFeatures: number, bias: boolean) => {
    out.push([`${prefix}.weight`, [outFeatures, inFeatures]]);
    if (bias) out.push([`${prefix}.bias`, [outFeatures]]);
  };
  out.push(['input_layernorm.weight', [hidden]]);
  if (type === 'mamba') {
    const inner = mambaInnerSize(cfg);
    const convDim = mambaConvDim(cfg);
    const heads = cfg.mamba_n_heads;
    linear('mamba.in_proj', hidden, inner + convDim + heads, cfg.mamba_proj_bias);
    out.push(['mamba.conv1d.weight', [convDim, 1, cfg.mamba_d_conv]]);
    if (cfg.mamba_conv_bias) out.push(['mamba.conv1d.bias', [convDim]]);
    out.push(['mamba.dt_bias', [heads]], ['mamba.A_log', [heads]], ['mamba.D', [heads]], ['mamba.norm.weight', [inner]]);
    linear('mamba.out_proj', inner, hidden, cfg.mamba_proj_bias);
  } else {
    const queryWidth = cfg.num_attention_heads * headDim(cfg);
    const keyValueWidth = cfg.num_key_value_heads * headDim(cfg);
    linear('self_attn.q_proj', hidden, queryWidth, cfg.attention_bias);
    linear('self_attn.k_proj', hidden, keyValueWidth, cfg.attention_bias);
    linear('self_attn.v_proj', hidden, keyValueWidth, cfg.attention_bias);
    linear('self_attn.o_proj', queryWidth, hidden, cfg.attention_bias);
  }
  out.push(['post_attention_layernorm.weight', [hidden]]);
  out.push(['shared_mlp.input_linear.weight', [2 * cfg.shared_intermediate_size, hidden]]);
  out.push(['shared_mlp.output_linear.weight', [hidden, cfg.shared_intermediate_size]]);
  if (useMoe(cfg)) {
    const e = cfg.num_local_experts;
    out.push(['block_sparse_moe.router.layer.weight', [e, hidden]]);
    out.push(['block_sparse_moe.input_linear.weight', [e, 2 * cfg.intermediate_size, hidden]]);
    out.push(['block_sparse_moe.output_linear.weight', [e, hidden, cfg.intermediate_size]]);
  }
  return out;
}

/** The model's non-layer parameters: embeddings first, then the final norm and an untied head. */
function outerShapes(cfg: GraniteMoeHybridConfig): { first: [string, number[]][]; last: [string, number[]][] } {
  const last: [string, number[]][] = [['model.norm.weight', [cfg.hidden_size]]];
  if (!cfg.tie_word_embeddings) last.push(['lm_head.weight', [cfg.vocab_size, cfg.hidden_size]]);
  return { first: [['model.embed_tokens.weight', [cfg.vocab_size, cfg.hidden_size]]], last };
}

/** The sizes of a `granitemoehybrid` config (see {@link ModelSizing}). */
export function granitemoehybridSizing(cfg: GraniteMoeHybridConfig): ModelSizing {
  return {
    parameterShapes() {
      const byType = { mamba: layerParameterShapes(cfg, 'mamba'), attention: layerParameterShapes(cfg, 'attention') };
      const { first, last } = outerShapes(cfg);
      const out = [...first];
      cfg.layer_types.forEach((type, i) => {
        for (const [name, shape] of byType[type]) out.push([`model.layers.${i}.${name}`, shape]);
      });
      return [...out, ...last];
    },
    parameterGroups() {
      const { first, last } = outerShapes(cfg);
      const shapes = [...first];
      const counts = first.map(() => 1);
      for (const type of ['mamba', 'attention'] as const) {
        const layers = cfg.layer_types.filter((t) => t === type).length;
        if (layers === 0) continue;
        for (const [name, shape] of layerParameterShapes(cfg, type)) {
          shapes.push([`model.layers.*.${name}`, shape]);
          counts.push(layers);
        }
      }
      return { shapes: [...shapes, ...last], counts: [...counts, ...last.map(() => 1)] };
    },
    parameters: () => countParameters(cfg),
    stateFloatsPerSequence: () =>
      cfg.layer_types.filter((t) => t === 'mamba').length *
      ((cfg.mamba_d_conv - 1) * mambaConvDim(cfg) + cfg.mamba_n_heads * cfg.mamba_d_head * cfg.mamba_d_state),
    kvFloatsPerToken: () => cfg.layer_types.filter((t) => t === 'attention').length * 2 * cfg.num_key_value_heads * headDim(cfg),
    /**
     * The residual stream and its norm, the layer's mixer (Mamba: the in-projection and its split,
     * the conv output, the scan output and its gated norm; attention: q, k, v and the output) and
     * the MLP (the shared gated MLP's 2·S and S, the routed experts' k·3·I and the router's logits).
     */
    activationFloatsPerToken() {
      const hidden = cfg.hidden_size;
      const inner = mambaInnerSize(cfg);
      const inProj = inner + mambaConvDim(cfg) + cfg.mamba_n_heads;
      const mamba = cfg.layer_types.includes('mamba') ? 2 * inProj + mambaConvDim(cfg) + 3 * inner : 0;
      const attention = cfg.layer_types.includes('attention')
        ? 2 * cfg.num_attention_heads * headDim(cfg) + 2 * cfg.num_key_value_heads * headDim(cfg)
        : 0;
      const shared = 3 * cfg.shared_intermediate_size;
      const routed = useMoe(cfg) ? cfg.num_experts_per_tok * 3 * cfg.intermediate_size + 2 * cfg.num_local_experts : 0;
      return 4 * hidden + Math.max(mamba, attention) + shared + routed;
    },
  };
}
