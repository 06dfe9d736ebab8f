import type { ModelSizing } from '../model_family';
import type { GraniteConfig } from './config';

/** The parameters of one decoder layer, named from the layer (`mlp.gate_proj.weight`). */
function layerShapes(cfg: GraniteConfig): [string, number[]][] {
  const out: [string, number[]][] = [];
  const linear = (prefix: string, inFeatures: number, outFeatures: number, bias: boolean) => {
    out.push([`${prefix}.weight`, [outFeatures, inFeatures]]);
    if (bias) out.push([`${prefix}.bias`, [outFeatures]]);
  };
  const hidden = cfg.hidden_size;
  const queryWidth = cfg.num_attention_heads * cfg.head_dim;
  const keyValueWidth = cfg.num_key_value_heads * cfg.head_dim;
  out.push(['input_layernorm.weight', [hidden]]);
  linear('self_attn.q_proj', hidden, queryWidth, cfg.attention_bias);
  linear('self_attn.k_proj', hidden, keyValueWidth, cfg.attention_bias);
  linear('self_attn.v_proj', hidden, keyValueWidth, cfg.attention_bias);
  linear('self_attn.o_proj', queryWidth, hidden, cfg.attention_bias);
  out.push(['post_attention_layernorm.weight', [hidden]]);
  linear('mlp.gate_proj', hidden, cfg.intermediate_size, cfg.mlp_bias);
  linear('mlp.up_proj', hidden, cfg.intermediate_size, cfg.mlp_bias);
  linear('mlp.down_proj', cfg.intermediate_size, hidden, cfg.mlp_bias);
  return out;
}

const elements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** The sizes of a `granite` config (see {@link ModelSizing}). */
export function graniteSizing(cfg: GraniteConfig): ModelSizing {
  const embeddings: [string, number[]] = ['model.embed_tokens.weight', [cfg.vocab_size, cfg.hidden_size]];
  const last: [string, number[]][] = [['model.norm.weight', [cfg.hidden_size]]];
  if (!cfg.tie_word_embeddings) last.push(['lm_head.weight', [cfg.vocab_size, cfg.hidden_size]]);
  const layer = layerShapes(cfg);
  const total =
    elements(embeddings[1]) +
    cfg.num_hidden_layers * layer.reduce((n, [, s]) => n + elements(s), 0) +
    last.reduce((n, [, s]) => n + elements(s), 0);
  return {
    parameterShapes: () => [
      embeddings,
      ...Array.from({ length: cfg.num_hidden_layers }, (_, i) =>
        layer.map(([n, s]): [string, number[]] => [`model.layers.${i}.${n}`, s]),
      ).flat(),
      ...last,
    ],
    parameterGroups: () => ({
      shapes: [embeddings, ...layer.map(([n, s]): [string, number[]] => [`model.layers.*.${n}`, s]), ...last],
      counts: [1, ...layer.map(() => cfg.num_hidden_layers), ...last.map(() => 1)],
    }),
    parameters: () => ({ total, active: total }),
    stateFloatsPerSequence: () => 0,
    kvFloatsPerToken: () => cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim,
    // The residual stream and its norm, q, k, v and the attention output, the MLP's gate, up and product.
    activationFloatsPerToken: () =>
      4 * cfg.hidden_size +
      2 * cfg.num_attention_heads * cfg.head_dim +
      2 * cfg.num_key_value_heads * cfg.head_dim +
      3 * cfg.intermediate_size,
  };
}
