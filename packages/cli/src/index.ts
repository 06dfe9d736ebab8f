/**
 * The `graniteflow` command (generate, chat, serve, inspect, logits, download) and the pieces of
 * it that are useful from code: the OpenAI-compatible server, chat sessions that keep model state
 * between turns, and text streaming.
 * @module cli
 */
export { main } from './main';
export { processIO, type CliIO, type OutputStream } from './io';
export { createServer, type GraniteServer, type ServerOptions, type ServerStats } from './server/server';
export { graniteEngine, type Engine, type EngineCache, type EngineGenerateOptions, type GraniteEngineOptions } from './server/engine';
export { PrefixCache, type PrefixEntry, type PrefixMatch, type PrefixCacheOptions, type SnapshotSpill } from './server/prefix_cache';
export { GenerationQueue, QueueFullError, type GenerationQueueOptions, type Ticket } from './server/queue';
export { renderPrometheus, ServerMetrics, RATE_WINDOW_MS, type MetricFamily } from './server/metrics';
export {
  ApiError,
  parseChatRequest,
  parseCompletionRequest,
  type ChatRequest,
  type CompletionRequest,
  type Json,
  type SamplingParams,
} from './server/openai_protocol';
export { ChatSession, type SavedChat, type TurnStats } from './chat_session';
export { renderChat } from './text_generation';
export {
  embeddedModelPath,
  EMBEDDED_MODEL_NAME,
  loadModel,
  resolveModelArg,
  type LoadModelOptions,
  type ModelSource,
} from './model_source';
export { inspectConfig, type InspectReport } from './commands/inspect';
export { computeLogits } from './commands/logits';
export { ProgressBar, type ProgressBarOptions, type ProgressStream } from './progress';
export { CliError, UsageError, describeError } from './errors';
