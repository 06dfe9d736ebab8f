/**
 * `granitemoehybrid`: IBM Granite 4.0 models, hybrid and all-attention. Its `family` (the
 * registry's entry, `./family.ts`) is how code outside this folder reaches it.
 */
export * from './config';
export { PRESET_NAMES, preset, type PresetName } from './presets';
export { GraniteMoeHybridForCausalLM, GraniteMoeHybridModel } from './model';
export { GraniteMoeHybridDecoderLayer, mambaConfig } from './decoder_layer';
export { convertWeights } from './convert_weights';
