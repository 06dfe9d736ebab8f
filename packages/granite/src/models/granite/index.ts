/**
 * `granite`: the dense Granite transformer (transformers' `GraniteForCausalLM`). Its `family`
 * (the registry's entry, `./family.ts`) is how code outside this folder reaches it.
 */
export { parseConfig as parseGraniteConfig, GRANITE_CONFIG_LIMITS, type GraniteConfig } from './config';
export { GraniteBackbone, GraniteDecoderLayer, GraniteForCausalLM } from './model';
export { GraniteMLP, type GraniteMLPConfig } from './mlp';
export { convertWeights as convertGraniteWeights } from './convert_weights';
