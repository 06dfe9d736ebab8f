import type { CausalLM, CausalLMConfig, CausalLMOptions, LayerKind } from './causal_lm';

/**
 * A model's sizes by arithmetic from its config alone: nothing is built or allocated, so an
 * enormous config costs no more than a small one. Memory estimates, the dtype policy, random
 * checkpoints and `inspect` read these.
 */
export interface ModelSizing {
  /** Every parameter's name and checkpoint shape, in the order of the model's module tree. */
  parameterShapes(): [string, number[]][];
  /**
   * {@link ModelSizing.parameterShapes} with the layers of each kind folded into one entry named
   * `model.layers.*.…` and counted: what the dtype policy needs, in time independent of depth.
   */
  parameterGroups(): { shapes: [string, number[]][]; counts: number[] };
  /** All parameters, and those used per token (all but the routed experts not chosen). */
  parameters(): { total: number; active: number };
  /** Float32 values of the fixed-size state of one sequence (Mamba conv and SSM states). */
  stateFloatsPerSequence(): number;
  /** Float32 values of keys and values one token of one sequence adds (every attention layer). */
  kvFloatsPerToken(): number;
  /** Float32 values per token alive at once inside the widest layer of a forward pass. */
  activationFloatsPerToken(): number;
}

/** The routed experts of a model with a mixture of experts, for the load-balancing loss. */
export interface RoutedExperts {
  numExperts: number;
  topK: number;
  /** Weight of the load-balancing loss (HF `router_aux_loss_coef`). */
  auxLossCoef: number;
}

/**
 * Everything graniteflow needs of one Hugging Face `model_type`, kept in that type's folder
 * (`models/<type>/`): its config, model, checkpoint surgery, sizes and presets. Code outside the
 * folder reaches a family only through this interface (see `modelFamily`).
 */
export interface ModelFamily<C extends CausalLMConfig = CausalLMConfig> {
  /** The `model_type` of config.json. */
  readonly modelType: string;
  /** For messages: "IBM Granite 4.0 hybrid models". */
  readonly description: string;
  /** The `architectures` entry a saved config.json names (transformers' class). */
  readonly architecture: string;
  /** Parses and validates a config.json object; throws `ConfigError` naming the field. */
  parseConfig(raw: unknown, source?: string): C;
  /** A new model of `config`, its weights lazily initialized (loading assigns them all). */
  createModel(config: C, options?: CausalLMOptions): CausalLM<C>;
  /**
   * Checkpoint surgery, in one pure function run before loading: checkpoint names and values in,
   * the model's names and values out. Works on any value type (shapes for validation, readers for
   * loading).
   */
  convertWeights<T>(weights: Map<string, T>, config: C): Map<string, T>;
  /** The config.json transformers reads for `config`. */
  configJson(config: C): Record<string, unknown>;
  sizing(config: C): ModelSizing;
  /** What each layer caches, in layer order, from the config alone. */
  layerKinds(config: C): LayerKind[];
  /**
   * The architecture in a few labelled lines, for people (`graniteflow inspect`): mixers, heads,
   * feed-forward, positions; the generic facts (layers, widths, parameters) are added by the caller.
   */
  describe(config: C): [label: string, value: string][];
  /** The routed experts, or null for a dense model. */
  routedExperts(config: C): RoutedExperts | null;
  /** Names of the released models with a preset (for sizing, `inspect` and random checkpoints). */
  readonly presetNames: readonly string[];
  /** The config of a released model; throws naming the known presets. */
  preset(name: string): C;
}
