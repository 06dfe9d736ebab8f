/**
 * What the HTTP server needs of a model, as an interface: a {@link GraniteModel} behind
 * {@link graniteEngine}, or a scripted stand-in in tests (tool calls, slow generations).
 */
import {
  BatchGenerator,
  estimateMemory,
  type BatchGeneratorStats,
  jsonConstraint,
  loadCacheFile,
  saveCacheFile,
  type GraniteModel,
  type GraniteTokenizer,
  type HybridCache,
  type ResponseFormat,
  type TokenConstraint,
  type TokenLogprob,
} from '@graniteflow/granite';
import { renderChat, requireTokenizer, type ChatMessage, type TextEvent } from '../text_generation';

/** A model state the server can copy and resume from (granite's `HybridCache` fits). */
export interface EngineCache {
  /** Tokens the state holds. */
  readonly seqLength: number;
  /** Bytes of memory it holds. */
  readonly byteSize: number;
  clone(): EngineCache;
  dispose(): void;
}

/** Options of {@link Engine.generate}. */
export interface EngineGenerateOptions {
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stopStrings?: readonly string[];
  signal?: AbortSignal;
  /** Continue from this state and leave it holding every token fed (prompt + generated but the last). */
  cache: EngineCache;
  /** Only tokens it allows are generated (JSON mode). */
  constraint?: TokenConstraint;
  /** Called with each generated token's log-probability and the `top` most likely tokens. */
  logprobs?: { top: number; onToken(entry: TokenLogprob): void };
}

/** A model as the server sees it. */
export interface Engine {
  /** Name reported by /v1/models and in responses. */
  readonly id: string;
  /** Tokens a request may span (prompt + completion). */
  readonly contextLength: number;
  /**
   * Most bytes of UTF-8 text one token stands for. Lets the server refuse a prompt too long for the
   * context from its length alone, before the (slow, synchronous) tokenizer runs.
   */
  readonly maxTokenBytes: number;
  /** The chat template's prompt for `messages`, ending with the assistant header. */
  renderChat(messages: readonly ChatMessage[], options: { tools?: readonly unknown[]; documents?: readonly unknown[] }): string;
  encode(text: string): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  makeCache(): EngineCache;
  /**
   * A constraint making the output JSON as `format` asks, or null for free text. Throws (with a
   * message naming what is unsupported) for a schema it cannot enforce. Absent: JSON mode is refused.
   */
  jsonConstraint?(format: ResponseFormat): TokenConstraint | null;
  /** Writes a state to a file and reads it back (for `snapshotDir`); absent: states are never spilled. */
  saveCache?(cache: EngineCache, file: string): void;
  loadCache?(file: string): EngineCache;
  /** Bytes of state one sequence of `tokens` positions holds (Mamba states, attention keys and values). */
  stateBytes(tokens: number): number;
  /**
   * Text events for the new ids `promptIds`, continuing from `options.cache`. Several may run at
   * once: their decode steps are batched.
   */
  generate(promptIds: readonly number[], options: EngineGenerateOptions): AsyncGenerator<TextEvent>;
  /** What the batch is doing, for /metrics. */
  batchStats?(): BatchGeneratorStats;
}

/** Options of {@link graniteEngine}. */
export interface GraniteEngineOptions {
  id: string;
  /** Tokens a request may span (default 4096). */
  contextLength?: number;
  /** Sequences decoded together at most (default 8). */
  parallel?: number;
  /** Prompt tokens fed per prefill step between decode steps (default 256). */
  prefillChunk?: number;
}

/**
 * Prompts are fed to the model at most this many tokens at a time, between decode steps of the
 * other sequences: one forward pass over a long prompt would hold the loop (and `/health`, and
 * every other client) for seconds. Feeding pieces through the cache gives the same state.
 */
const PREFILL_CHUNK_TOKENS = 256;

/** Whether `token` is written in the GPT-2 byte-level alphabet: one character per byte of text. */
function isByteLevel(token: string): boolean {
  for (const ch of token) {
    const c = ch.codePointAt(0)!;
    if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0x143))) return false;
  }
  return true;
}

/**
 * Bytes of text the longest token of `tokenizer` stands for: its length in characters when the
 * whole vocabulary is byte-level (each character is one byte), else its UTF-8 length (never less
 * than the text it stands for: SentencePiece's "▁" is 3 bytes for a 1-byte space).
 */
function longestTokenBytes(tokenizer: GraniteTokenizer): number {
  const tokens: string[] = [];
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const token = tokenizer.idToToken(id);
    if (token !== undefined) tokens.push(token);
  }
  const byteLevel = tokens.every(isByteLevel);
  let longest = 1;
  for (const token of tokens) longest = Math.max(longest, byteLevel ? token.length : Buffer.byteLength(token));
  return longest;
}

/** Bytes of state one sequence of a Granite model holds at `tokens` positions: its Mamba states plus its attention keys and values. */
export function graniteStateBytes(model: GraniteModel): (tokens: number) => number {
  const sizes = estimateMemory(model.config, { contextLength: 1 });
  return (tokens) => sizes.stateBytesPerSequence + tokens * sizes.kvBytesPerToken;
}

/** An {@link Engine} over a loaded Granite model: concurrent generations run as one batch ({@link BatchGenerator}). */
export function graniteEngine(model: GraniteModel, options: GraniteEngineOptions): Engine {
  const { id, contextLength = 4096, parallel = 8, prefillChunk = PREFILL_CHUNK_TOKENS } = options;
  const tokenizer = requireTokenizer(model);
  const batcher = new BatchGenerator(model, { maxBatch: parallel, prefillChunk });
  // The same model, its generations joining the batch: streamText (stop strings, UTF-8) runs on top.
  const batched = Object.create(model) as GraniteModel;
  batched.generate = (promptIds, generateOptions) => batcher.generate(promptIds, generateOptions);
  return {
    id,
    contextLength,
    maxTokenBytes: longestTokenBytes(tokenizer),
    renderChat: (messages, renderOptions) => renderChat(tokenizer, messages, renderOptions),
    encode: (text) => tokenizer.encode(text),
    decode: (ids, decodeOptions) => tokenizer.decode(ids, decodeOptions),
    makeCache: () => model.makeCache(),
    jsonConstraint: (format) => jsonConstraint(model, format),
    saveCache: (cache, file) => saveCacheFile(cache as HybridCache, file),
    loadCache: (file) => loadCacheFile(file, model.model.layerKinds),
    stateBytes: graniteStateBytes(model),
    generate: (promptIds, generateOptions) =>
      batched.streamText(promptIds, { ...generateOptions, cache: generateOptions.cache as HybridCache }),
    batchStats: () => batcher.stats,
  };
}
