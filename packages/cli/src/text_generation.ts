/**
 * Text-level helpers around a {@link GraniteModel}: the tokenizer (or a clear error when a folder
 * has none), rendering a conversation through the chat template, and timing a generation.
 */
import type { ChatMessage, GenerateOptions, GraniteModel, GraniteTokenizer } from '@graniteflow/granite';
import { CliError } from './errors';

export type { ChatMessage, TextEvent } from '@graniteflow/granite';

/** The model's tokenizer, or a clear error when its folder has none. */
export function requireTokenizer(model: Pick<GraniteModel, 'tokenizer' | 'folder'>): GraniteTokenizer {
  if (model.tokenizer === null) {
    throw new CliError(
      `${model.folder} has no tokenizer.json, so text cannot be encoded or decoded. Use a complete model folder, or give token ids (graniteflow logits --ids 1,2,3).`,
    );
  }
  return model.tokenizer;
}

/** The chat template's rendering of `messages`, ending with the header of the assistant's turn. */
export function renderChat(
  tokenizer: GraniteTokenizer,
  messages: readonly ChatMessage[],
  options: { tools?: readonly unknown[]; documents?: readonly unknown[] } = {},
): string {
  return tokenizer.applyChatTemplate(messages, {
    addGenerationPrompt: true,
    ...(options.tools?.length ? { tools: options.tools } : {}),
    ...(options.documents?.length ? { documents: options.documents } : {}),
  });
}

/** Prefill and decode speed of one generation: time to the first new token is prefill, the rest decode. */
export interface GenerationTiming {
  /** Tokens fed before the first new token. */
  promptTokens: number;
  generatedTokens: number;
  /** Milliseconds from the start to the first new token (prefill + one sampling step). */
  prefillMs: number;
  /** Milliseconds from the first to the last new token. */
  decodeMs: number;
}

/** An empty timing record. */
export function newTiming(): GenerationTiming {
  return { promptTokens: 0, generatedTokens: 0, prefillMs: 0, decodeMs: 0 };
}

async function* timed(ids: AsyncIterable<number>, promptTokens: number, timing: GenerationTiming): AsyncGenerator<number> {
  const start = performance.now();
  let first = start;
  Object.assign(timing, newTiming(), { promptTokens });
  for await (const id of ids) {
    const now = performance.now();
    if (timing.generatedTokens === 0) {
      first = now;
      timing.prefillMs = now - start;
    } else {
      timing.decodeMs = now - first;
    }
    timing.generatedTokens++;
    yield id;
  }
}

/**
 * The same model, with every generation timed into `timing` (read it after the generation ends).
 * `streamText` and friends run unchanged on top: only `generate` is wrapped.
 */
export function withTiming(model: GraniteModel, timing: GenerationTiming): GraniteModel {
  const timedModel = Object.create(model) as GraniteModel;
  timedModel.generate = (ids: readonly number[], options?: GenerateOptions) => timed(model.generate(ids, options), ids.length, timing);
  return timedModel;
}
