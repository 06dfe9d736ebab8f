import type { ModelFamily } from '../model_family';
import { parseConfig, type GraniteConfig } from './config';
import { convertWeights } from './convert_weights';
import { GraniteForCausalLM } from './model';
import { graniteSizing } from './sizing';

/** `granite`: the dense Granite transformer (Granite 3.x; transformers' `GraniteForCausalLM`). */
export const family: ModelFamily<GraniteConfig> = {
  modelType: 'granite',
  description: 'IBM Granite 3.x dense transformers',
  architecture: 'GraniteForCausalLM',
  parseConfig,
  createModel: (config, options) => new GraniteForCausalLM(config, options),
  convertWeights,
  configJson: (config) => ({ ...config }),
  sizing: graniteSizing,
  layerKinds: (config) => Array(config.num_hidden_layers).fill('attention'),
  describe: (c) => [
    [
      'attention',
      `${c.num_attention_heads} query / ${c.num_key_value_heads} key-value heads of ${c.head_dim}, rotary position embeddings (RoPE, θ ${c.rope_theta})`,
    ],
    ['feed-forward', `dense: gated MLP (${c.hidden_act}) of ${c.intermediate_size}`],
  ],
  routedExperts: () => null,
  // No released checkpoint's config is shipped with graniteflow yet: load one from its folder or the hub.
  presetNames: [],
  preset(name) {
    throw new Error(`No preset named "${name}" for model_type "granite": load the checkpoint's own config.json.`);
  },
};
