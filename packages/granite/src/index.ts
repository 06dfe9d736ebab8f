/**
 * IBM Granite language models on TensorFlow.js — Granite 4.0 hybrid and all-attention
 * (`granitemoehybrid`) and dense Granite 3.x (`granite`), one `CausalLM` interface: load a
 * checkpoint from a folder or the Hugging Face hub, tokenize and apply its chat template, generate.
 * @module granite
 */
import '@graniteflow/ops-mamba';
import '@graniteflow/ops-moe';

export * from './models/granitemoehybrid';
export { familyOf, modelFamily, presetConfig, presetNames, SUPPORTED_MODEL_TYPES, UnsupportedModelError } from './models';
export {
  eosTokenIds,
  type CausalLM,
  type CausalLMConfig,
  type CausalLMOptions,
  type ForwardOptions,
  type ForwardOutput,
  type LayerKind,
} from './models/causal_lm';
export type { ModelFamily, ModelSizing, RoutedExperts } from './models/model_family';
export { CausalSelfAttention, type AttentionConfig, type AttentionContext } from './layers/attention';
export { applyRope, ropeAngles } from './layers/rope';
export { runDecoderStack, type DecoderLayer, type DecoderStack, type LayerContext } from './layers/decoder_stack';
export { DecoderOnlyLM, tokenEmbedding, type CachingDecoderLayer, type DecoderBackbone } from './layers/decoder_only_lm';
export { KVCache } from './cache/kv_cache';
export { HybridCache, type LayerCache } from './cache/hybrid_cache';
export { MambaCache } from '@graniteflow/ops-mamba';
export { fromPretrained, type FromPretrainedOptions, type LoadNote, type LoadProgress } from './loading/from_pretrained';
export { loadWeights, logicalShape, QUANTIZE_CHUNK_BYTES, type LoadWeightsOptions, type WeightsProgress } from './loading/load_weights';
export {
  checkWeightDtype,
  PACKED_WEIGHTS,
  planWeightDtypes,
  policyDtype,
  WeightPolicyError,
  type WeightDtypeOverrides,
  type WeightPlan,
  type WeightPolicyOptions,
} from './loading/weight_policy';
export { readGenerationConfig, type GenerationConfig, type SamplingDefaults } from './loading/generation_config';
export { ModelFileError, readConfigJson, readModelConfig } from './loading/model_files';
export {
  assertFitsInMemory,
  backendMemoryLimit,
  bytesOfWeight,
  countParameters,
  estimateMemory,
  fitsBackend,
  formatBytes,
  HOST_MEMORY_FRACTION,
  InsufficientMemoryError,
  parameterShapes,
  totalBytesAt,
  WASM_TENSOR_BUDGET,
  type BackendMemoryLimit,
  type EstimateMemoryOptions,
  type MemoryEstimate,
} from './loading/memory';
export {
  GraniteModel,
  type FinishReason,
  type PromptOptions,
  type TextEvent,
  type TextGenerationOptions,
  type WeightDtypeSummary,
  type WeightsSource,
} from './granite_model';
export * from './tokenizer';
export * from './hub';
export * from './generation/sampling';
export { createPrng, randomSeed, type Prng } from './generation/prng';
export { TextStream, streamText, type TextStreamOptions, type TokenDecoder } from './generation/text_stream';
export { StopStringDetector, StopStringError, findStopString, type StopStringStep } from './generation/stop_strings';
export {
  writeRandomCheckpoint,
  writeRandomPackedCheckpoint,
  type RandomCheckpointOptions,
  type RandomPackedCheckpointOptions,
} from './loading/random_checkpoint';
export {
  exportGguf,
  GGUF_EXPORT_FORMATS,
  GgufExportError,
  type ExportGgufOptions,
  type ExportGgufResult,
  type GgufExportFormat,
} from './models/granitemoehybrid/export_gguf';
export { GgufVocabError } from './gguf/gguf_vocab';
export { configJson, saveCheckpoint, TOKENIZER_FILES, type SaveCheckpointOptions } from './loading/save_checkpoint';
export { chatExample, padExamples, type ChatExample } from './training/chat_examples';
export { causalLmLoss, IGNORE_INDEX, type CausalLmBatch, type CausalLmLossOptions } from './training/causal_lm_loss';
export { DEFAULT_PREFILL_CHUNK, generateBatch, generateTokens, type BatchStep, type GenerateOptions } from './generation/generate';
export { newTiming, withTiming, type GenerationTiming } from './generation/timing';
export {
  ChatSession,
  type ChatGenerationOptions,
  type ChatReply,
  type ChatSessionOptions,
  type ChatTool,
  type ChatToolCallRecord,
  type SavedChat,
  type TurnStats,
} from './chat/chat_session';
export { StreamedReply } from './chat/streamed_reply';
export { createTextGenerator, type TextGenerator, type TextGeneratorCallOptions, type TextGeneratorOptions } from './chat/text_generator';
export { stackCaches, selectRows, type BatchRowsOptions } from './cache/batch_rows';
export {
  BatchGenerator,
  type BatchGeneratorOptions,
  type BatchGeneratorStats,
  type BatchSequenceOptions,
} from './generation/batch_generator';
export { JsonSchemaError } from './generation/json_schema_error';
export { compileJsonSchema, JsonAutomaton, type JsonAutomatonOptions, type JsonState } from './generation/json_schema_automaton';
export type { JsonSchema } from './generation/json_schema_nodes';
export { JsonConstraint } from './generation/json_constraint';
export { TokenTrie, type TokenTrieOptions } from './generation/token_trie';
export { maskLogits } from './generation/mask_logits';
export { compileResponseFormat, responseFormatSchema, type ResponseFormat } from './generation/response_format';
export { chooseToken, type TokenChoiceOptions, type TokenConstraint, type TokenLogprob } from './generation/token_choice';
export { jsonConstraint, tokenTrieOf } from './generation/json_mode';
export { CacheFileError, cacheFileBytes, loadCacheFile, saveCacheFile } from './cache/cache_file';
