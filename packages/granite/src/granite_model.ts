import type { HybridCache } from './cache/hybrid_cache';
import { generateBatch, generateTokens, type BatchStep, type GenerateOptions } from './generation/generate';
import type { GenerationConfig } from './loading/generation_config';
import { eosTokenIds, type GraniteMoeHybridConfig } from './models/granitemoehybrid/config';
import type { GraniteMoeHybridForCausalLM } from './models/granitemoehybrid/model';
import type { GraniteTokenizer } from './tokenizer/tokenizer';

/**
 * A loaded model with what a user needs around it: its tokenizer and chat template (when the
 * folder has them), its generation defaults, and generation with those defaults filled in.
 * Made by {@link fromPretrained}.
 */
export class GraniteModel {
  constructor(
    readonly model: GraniteMoeHybridForCausalLM,
    readonly tokenizer: GraniteTokenizer | null,
    /** The local folder the model was loaded from. */
    readonly folder: string,
    readonly generationConfig: GenerationConfig | null,
    /** The tfjs backend it runs on. */
    readonly backend: string,
  ) {}

  get config(): GraniteMoeHybridConfig {
    return this.model.config;
  }

  /** Ids that end generation: generation_config.json's, else config.json's, else the tokenizer's. */
  get eosTokenIds(): number[] {
    const fromGeneration = this.generationConfig?.eosTokenIds ?? [];
    if (fromGeneration.length) return fromGeneration;
    const fromConfig = eosTokenIds(this.config);
    if (fromConfig.length) return fromConfig;
    return this.tokenizer ? [...this.tokenizer.eosTokenIds] : [];
  }

  /** Ids at or above this have no token (the embedding is padded) and are never sampled. */
  get vocabLimit(): number {
    return Math.min(this.tokenizer?.vocabSize ?? this.config.vocab_size, this.config.vocab_size);
  }

  get padTokenId(): number {
    return this.generationConfig?.padTokenId ?? this.config.pad_token_id ?? this.tokenizer?.padTokenId ?? 0;
  }

  /** An empty cache for `batch` sequences. */
  makeCache(batch = 1): HybridCache {
    return this.model.makeCache(batch);
  }

  private withDefaults(options: GenerateOptions): GenerateOptions {
    return {
      eosTokenIds: this.eosTokenIds,
      vocabLimit: this.vocabLimit,
      padTokenId: this.padTokenId,
      ...options,
    };
  }

  /** Token ids generated from `promptIds` (see {@link generateTokens}), with this model's defaults. */
  generate(promptIds: readonly number[], options: GenerateOptions = {}): AsyncGenerator<number> {
    return generateTokens(this.model, promptIds, this.withDefaults(options));
  }

  /** A batch of prompts, left-padded (see {@link generateBatch}), with this model's defaults. */
  generateBatch(prompts: readonly (readonly number[])[], options: GenerateOptions = {}): AsyncGenerator<BatchStep> {
    return generateBatch(this.model, prompts, this.withDefaults(options));
  }

  /** Frees every weight tensor. */
  dispose(): void {
    this.model.dispose();
  }
}
