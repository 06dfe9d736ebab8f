/**
 * What the HTTP server needs of a model, as an interface: a {@link GraniteModel} behind
 * {@link graniteEngine}, or a scripted stand-in in tests (tool calls, slow generations).
 */
import type { GraniteModel, HybridCache } from '@graniteflow/granite';
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
}

/** A model as the server sees it. */
export interface Engine {
  /** Name reported by /v1/models and in responses. */
  readonly id: string;
  /** Tokens a request may span (prompt + completion). */
  readonly contextLength: number;
  /** The chat template's prompt for `messages`, ending with the assistant header. */
  renderChat(messages: readonly ChatMessage[], options: { tools?: readonly unknown[]; documents?: readonly unknown[] }): string;
  encode(text: string): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  makeCache(): EngineCache;
  /** Text events for the new ids `promptIds`, continuing from `options.cache`. */
  generate(promptIds: readonly number[], options: EngineGenerateOptions): AsyncGenerator<TextEvent>;
}

/** An {@link Engine} over a loaded Granite model. */
export function graniteEngine(model: GraniteModel, { id, contextLength = 4096 }: { id: string; contextLength?: number }): Engine {
  const tokenizer = requireTokenizer(model);
  return {
    id,
    contextLength,
    renderChat: (messages, options) => renderChat(tokenizer, messages, options),
    encode: (text) => tokenizer.encode(text),
    decode: (ids, options) => tokenizer.decode(ids, options),
    makeCache: () => model.makeCache(),
    generate: (promptIds, options) => model.streamText(promptIds, { ...options, cache: options.cache as HybridCache }),
  };
}
