import * as tf from '@tensorflow/tfjs-core';
import type { HybridCache } from '../cache/hybrid_cache';
import { eosTokenIds, type CausalLM } from '../models/causal_lm';
import { nextEventLoopTurn } from './event_loop';
import { leftPad } from './left_pad';
import { makeSampler, type SamplingOptions } from './sampling';
import { chooseToken, type TokenChoiceOptions } from './token_choice';

/** Options of {@link generateTokens} and {@link generateBatch}. */
export interface GenerateOptions extends SamplingOptions, TokenChoiceOptions {
  /** Stop after this many new tokens (default 256). */
  maxNewTokens?: number;
  /** Stop when one of these is produced (default: the config's `eos_token_id`). It is yielded. */
  eosTokenIds?: readonly number[];
  /** Ids at or above this are never sampled: padded vocabulary rows with no token. */
  vocabLimit?: number;
  /**
   * Cancels generation: the generator throws the signal's reason and frees its tensors. It is
   * checked before each step, after a turn of the event loop, so an abort from a timer, a signal
   * handler or a stream event is seen before the next token even on the synchronous backends.
   */
  signal?: AbortSignal;
  /**
   * Continue from this cache and leave it updated (it then holds every token fed to the model:
   * the prompt and all generated tokens but the last). The prompt is only the new tokens. Without
   * one, a fresh cache is made and freed when generation ends.
   */
  cache?: HybridCache;
  /** Left-padding id for batches of unequal prompts (default: config `pad_token_id`, else 0). */
  padTokenId?: number;
  /**
   * Feed the prompt through the model this many tokens at a time (default 512): the Mamba layers
   * carry their conv and SSM state from chunk to chunk and attention appends to its KV cache, so
   * the result equals one pass, while the activations held at once stay those of one chunk. An
   * abort is seen between chunks.
   */
  prefillChunk?: number;
  /**
   * Positions a sequence may fill, cached, prompt and new tokens together (default, and at most,
   * the config's `max_position_embeddings`): a prompt that leaves no room is refused before any
   * work, and generation stops (as at `maxNewTokens`) when the context is full.
   */
  maxContext?: number;
}

/** Default of {@link GenerateOptions.prefillChunk}. */
export const DEFAULT_PREFILL_CHUNK = 512;

/** The token ids of each row at one step; `null` for rows that already finished. */
export type BatchStep = (number | null)[];

/** New tokens the context has room for after the cache and the longest prompt; throws when none. */
export function roomInContext(limit: number, options: GenerateOptions, prompts: readonly (readonly number[])[]): number {
  const maxContext = options.maxContext ?? limit;
  if (!Number.isInteger(maxContext) || maxContext < 1) throw new RangeError(`maxContext must be a positive integer, got ${maxContext}.`);
  if (maxContext > limit) {
    throw new RangeError(`maxContext ${maxContext} is more than the model's max_position_embeddings (${limit} positions).`);
  }
  const cached = options.cache?.seqLength ?? 0;
  const used = cached + Math.max(...prompts.map((p) => p.length));
  if (used >= maxContext) {
    const what = cached > 0 ? `${used} tokens (${cached} cached, the rest prompt)` : `${used} prompt tokens`;
    throw new RangeError(
      `${what} leave no room for a new token in a context of ${maxContext}: shorten the prompt or raise maxContext (at most max_position_embeddings = ${limit}).`,
    );
  }
  return maxContext - used;
}

/**
 * Generates from a batch of prompts, yielding one step at a time: the new token of every row
 * (`null` once a row has finished). Prompts of different lengths are left-padded and masked as
 * Hugging Face does, so each row continues exactly as its prompt would alone.
 */
export async function* generateBatch(
  model: CausalLM,
  prompts: readonly (readonly number[])[],
  options: GenerateOptions = {},
): AsyncGenerator<BatchStep> {
  if (prompts.length === 0) throw new RangeError('generateBatch needs at least one prompt.');
  if (prompts.some((p) => p.length === 0) && options.cache === undefined) {
    throw new RangeError('Every prompt needs at least one token (or continue from a cache).');
  }
  const cfg = model.config;
  const maxNew = Math.min(options.maxNewTokens ?? 256, roomInContext(cfg.max_position_embeddings, options, prompts));
  const eos = new Set(options.eosTokenIds ?? eosTokenIds(cfg));
  const vocabLimit = Math.min(options.vocabLimit ?? cfg.vocab_size, cfg.vocab_size);
  for (const p of prompts) {
    for (const id of p) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocab_size) {
        throw new RangeError(`Prompt token id ${id} is outside the vocabulary [0, ${cfg.vocab_size}).`);
      }
    }
  }
  const batch = prompts.length;
  if ((options.constraint || options.logprobs) && batch > 1) {
    throw new RangeError(
      'constraint and logprobs apply to one sequence: generate one prompt at a time with them, or use a BatchGenerator.',
    );
  }
  const samplers = prompts.map((_, row) =>
    makeSampler({ ...options, seed: options.seed === undefined ? undefined : options.seed + row }, { vocabLimit }),
  );
  const history = prompts.map((p) => [...p]);
  const finished = new Array<boolean>(batch).fill(false);
  const ownCache = options.cache === undefined;
  // The KV caches' whole length is known: allocate it once rather than grow by doubling.
  const cache = options.cache ?? model.makeCache(batch, { length: Math.max(...prompts.map((p) => p.length)) + maxNew });
  if (cache.batchSize !== batch) {
    throw new RangeError(`The cache holds ${cache.batchSize} sequences but ${batch} prompts were given.`);
  }
  const padId = options.padTokenId ?? cfg.pad_token_id ?? 0;
  const chunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`prefillChunk must be a positive integer, got ${chunk}.`);
  try {
    const first = leftPad(prompts, padId);
    let stepIds = first.ids;
    let stepMask: number[] | null = first.padded ? first.mask : null;
    let width = first.width;
    // Columns [from, to) of the [batch, width] step through the model, the cache recording them.
    const feed = (from: number, to: number, logits: 'last' | 'none') =>
      tf.tidy(() => {
        const cols = (flat: number[]) =>
          to - from === width ? flat : Array.from({ length: batch }, (_, r) => flat.slice(r * width + from, r * width + to)).flat();
        const ids = tf.tensor2d(cols(stepIds), [batch, to - from], 'int32');
        const mask = stepMask ? tf.tensor2d(cols(stepMask), [batch, to - from], 'float32') : undefined;
        return model.forward(ids, { cache, attentionMask: mask, logits }).logits;
      });
    for (let produced = 0; produced < maxNew; produced++) {
      if (produced > 0) await nextEventLoopTurn();
      options.signal?.throwIfAborted();
      let start = 0;
      for (; width - start > chunk; start += chunk) {
        feed(start, start + chunk, 'none');
        await nextEventLoopTurn();
        options.signal?.throwIfAborted();
      }
      const logits = feed(start, width, 'last')!;
      const values = (await logits.data()) as Float32Array;
      logits.dispose();
      options.signal?.throwIfAborted();
      const vocab = cfg.vocab_size;
      const step: BatchStep = [];
      for (let row = 0; row < batch; row++) {
        if (finished[row]) {
          step.push(null);
          continue;
        }
        const id = chooseToken(samplers[row], values.subarray(row * vocab, (row + 1) * vocab), history[row], vocabLimit, options);
        history[row].push(id);
        step.push(id);
        if (eos.has(id)) finished[row] = true;
      }
      yield step;
      if (finished.every(Boolean) || produced + 1 === maxNew) break;
      // Finished rows keep feeding their last token; their outputs are ignored.
      stepIds = history.map((h) => h[h.length - 1]);
      stepMask = null;
      width = 1;
    }
  } finally {
    if (ownCache) cache.dispose();
  }
}

/**
 * Generates token ids for one prompt, one at a time, greedy unless sampling options say otherwise.
 * Stops at an eos id (which is yielded), at `maxNewTokens`, or when `signal` aborts.
 *
 * @example
 * ```ts
 * for await (const id of generateTokens(model, promptIds, { maxNewTokens: 32 })) process.stdout.write(`${id} `);
 * ```
 */
export async function* generateTokens(
  model: CausalLM,
  promptIds: readonly number[],
  options: GenerateOptions = {},
): AsyncGenerator<number> {
  for await (const [id] of generateBatch(model, [promptIds], options)) {
    if (id !== null) yield id;
  }
}
