/**
 * Prefill and decode speed of a generation, measured around {@link GraniteModel.generate} so that
 * everything built on it (`streamText`, chat sessions) is timed without changes.
 */
import type { GraniteModel } from '../granite_model';
import type { GenerateOptions } from './generate';

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
