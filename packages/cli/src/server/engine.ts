/**
 * What the HTTP server needs of a model, as an interface: a {@link GraniteModel} behind
 * {@link graniteEngine}, or a scripted stand-in in tests (tool calls, slow generations).
 */
import type { GraniteModel, GraniteTokenizer, HybridCache } from '@graniteflow/granite';
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
  /** Text events for the new ids `promptIds`, continuing from `options.cache`. */
  generate(promptIds: readonly number[], options: EngineGenerateOptions): AsyncGenerator<TextEvent>;
}

/**
 * Prompts are fed to the model at most this many tokens at a time, with a turn of the event loop
 * between pieces: one forward pass over a long prompt would hold the loop (and `/health`, and every
 * other client) for seconds. Feeding pieces through the cache gives the same state, and is faster.
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

/** An {@link Engine} over a loaded Granite model. */
export function graniteEngine(model: GraniteModel, { id, contextLength = 4096 }: { id: string; contextLength?: number }): Engine {
  const tokenizer = requireTokenizer(model);
  return {
    id,
    contextLength,
    maxTokenBytes: longestTokenBytes(tokenizer),
    renderChat: (messages, options) => renderChat(tokenizer, messages, options),
    encode: (text) => tokenizer.encode(text),
    decode: (ids, options) => tokenizer.decode(ids, options),
    makeCache: () => model.makeCache(),
    async *generate(promptIds, options) {
      const cache = options.cache as HybridCache;
      let start = 0;
      // The repetition penalty counts the prompt ids of the last call, so a prompt it applies to
      // is fed whole.
      if (options.repetitionPenalty === undefined || options.repetitionPenalty === 1) {
        for (; promptIds.length - start > PREFILL_CHUNK_TOKENS; start += PREFILL_CHUNK_TOKENS) {
          const piece = promptIds.slice(start, start + PREFILL_CHUNK_TOKENS);
          for await (const _ of model.generate(piece, { maxNewTokens: 1, temperature: 0, cache, signal: options.signal })) {
            // One greedy token, discarded: the cache then holds exactly the piece fed.
          }
          await new Promise<void>((resolve) => setImmediate(resolve));
          options.signal?.throwIfAborted();
        }
      }
      yield* model.streamText(start === 0 ? promptIds : promptIds.slice(start), { ...options, cache });
    },
  };
}
