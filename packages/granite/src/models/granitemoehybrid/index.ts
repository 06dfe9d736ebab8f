/**
 * `granitemoehybrid`: IBM Granite 4.0 hybrid models. Every model type module exports the same
 * things: its config type and parser, the model class and the checkpoint conversion.
 */
export * from './config';
export { PRESET_NAMES, preset, type PresetName } from './presets';
export { GraniteMoeHybridForCausalLM, GraniteMoeHybridModel, type CausalLMOptions, type ForwardOptions, type ForwardOutput } from './model';
export { GraniteMoeHybridDecoderLayer, mambaConfig, type LayerContext } from './decoder_layer';
export { GraniteAttention, type AttentionContext } from './attention';
export { convertWeights } from './convert_weights';
