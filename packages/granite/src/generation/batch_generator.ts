/**
 * Continuous batching: many generations at once on one model, each decode step one batched
 * forward pass for every running sequence, so each weight is read once per step for all of them
 * (decode is bound by reading the weights). A new sequence's prompt is prefilled on its own, a
 * chunk at a time between decode steps (a long prompt does not stall the others), then its state
 * joins the batch; a finished sequence leaves it. Sampling, limits and cancellation stay per
 * sequence, and a sequence's tokens are those it would get alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { HybridCache } from '../cache/hybrid_cache';
import { selectRows, stackCaches } from '../cache/batch_rows';
import type { GraniteModel } from '../granite_model';
import { nextEventLoopTurn } from './event_loop';
import { DEFAULT_PREFILL_CHUNK, roomInContext } from './generate';
import { makeSampler, type Sampler, type SamplingOptions } from './sampling';
import { chooseToken, type TokenChoiceOptions } from './token_choice';

/** Options of one sequence of a {@link BatchGenerator}. */
export interface BatchSequenceOptions extends SamplingOptions, TokenChoiceOptions {
  /** Stop after this many new tokens (default 256). */
  maxNewTokens?: number;
  /** Stop when one of these is produced (default: the model's); it is yielded. */
  eosTokenIds?: readonly number[];
  /** Cancels this sequence only: its generator throws the signal's reason. */
  signal?: AbortSignal;
  /** Positions the sequence may fill (default, and at most, max_position_embeddings). */
  maxContext?: number;
  /**
   * Continue from this (batch-1) cache and leave it updated when the sequence ends, as
   * `generate`'s `cache` option does: it then holds the prompt and every new token but the last.
   */
  cache?: HybridCache;
}

/** Options of a {@link BatchGenerator}. */
export interface BatchGeneratorOptions {
  /** Sequences decoded together at most; more wait their turn (default 8). */
  maxBatch?: number;
  /** Prompt tokens fed per prefill step between decode steps (default 512). */
  prefillChunk?: number;
}

/** What a {@link BatchGenerator} is doing and has done. */
export interface BatchGeneratorStats {
  /** Sequences in the decode batch. */
  active: number;
  /** Sequences being prefilled or waiting for a place. */
  waiting: number;
  /** Batched decode steps run, and the tokens they produced. */
  decodeSteps: number;
  decodeTokens: number;
  /** Prompt tokens fed. */
  prefillTokens: number;
  /**
   * Seconds spent in decode steps and in prefill steps (each from the forward pass to its tokens
   * handed over): decodeTokens / decodeSeconds is the batch's decode throughput, what batching
   * raises, apart from the prompts' prefill, which is compute-bound and does not batch.
   */
  decodeSeconds: number;
  prefillSeconds: number;
  /** Bytes of state of the decode batch (Mamba states, attention keys and values, padding included). */
  stateBytes: number;
}

/** Tokens of one sequence on their way to its consumer. */
class TokenQueue {
  private readonly items: number[] = [];
  private done = false;
  private error: unknown = undefined;
  private wake: (() => void) | null = null;

  push(id: number): void {
    this.items.push(id);
    this.notify();
  }

  end(error?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.notify();
  }

  private notify(): void {
    const resolve = this.wake;
    this.wake = null;
    resolve?.();
  }

  async *drain(): AsyncGenerator<number> {
    for (;;) {
      while (this.items.length) yield this.items.shift()!;
      if (this.done) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

/** One sequence from submission to its end. */
interface Sequence {
  readonly options: BatchSequenceOptions;
  readonly sampler: Sampler;
  readonly eos: ReadonlySet<number>;
  /** Prompt and generated ids (the repetition penalty's history). */
  readonly history: number[];
  readonly queue: TokenQueue;
  /** Prompt tokens not fed yet. */
  pending: number[];
  /** Its own cache while it is prefilled. */
  cache: HybridCache | null;
  maxNew: number;
  produced: number;
  /** The consumer stopped reading. */
  abandoned: boolean;
}

/**
 * Runs many generations on one model as one batch; see the module comment.
 *
 * @example
 * ```ts
 * const batcher = new BatchGenerator(granite, { maxBatch: 8 });
 * const replies = await Promise.all(prompts.map(async (ids) => {
 *   const out: number[] = [];
 *   for await (const id of batcher.generate(ids, { maxNewTokens: 64 })) out.push(id);
 *   return out;
 * }));
 * ```
 */
export class BatchGenerator {
  private readonly waiting: Sequence[] = [];
  private prefilling: Sequence | null = null;
  private active: Sequence[] = [];
  /** The decode batch's state: row i is `active[i]`. */
  private batch: HybridCache | null = null;
  private running: Promise<void> | null = null;
  private readonly maxBatch: number;
  private readonly prefillChunk: number;
  private counters = { decodeSteps: 0, decodeTokens: 0, prefillTokens: 0, decodeSeconds: 0, prefillSeconds: 0 };

  constructor(
    readonly model: GraniteModel,
    options: BatchGeneratorOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 8;
    this.prefillChunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1)
      throw new RangeError(`maxBatch must be a positive integer, got ${options.maxBatch}.`);
    if (!Number.isInteger(this.prefillChunk) || this.prefillChunk < 1)
      throw new RangeError(`prefillChunk must be a positive integer, got ${options.prefillChunk}.`);
  }

  get stats(): BatchGeneratorStats {
    return {
      active: this.active.length,
      waiting: this.waiting.length + (this.prefilling ? 1 : 0),
      ...this.counters,
      stateBytes: this.batch?.byteSize ?? 0,
    };
  }

  /**
   * The new token ids of one prompt, generated together with every other sequence running. The
   * checks `generate` makes (token ids in the vocabulary, room in the context) throw here, at once.
   */
  generate(promptIds: readonly number[], options: BatchSequenceOptions = {}): AsyncGenerator<number> {
    const cfg = this.model.config;
    if (promptIds.length === 0) throw new RangeError('BatchGenerator.generate: the prompt needs at least one token.');
    for (const id of promptIds) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocab_size)
        throw new RangeError(`Prompt token id ${id} is outside the vocabulary [0, ${cfg.vocab_size}).`);
    }
    if (options.cache && options.cache.batchSize !== 1)
      throw new RangeError(`BatchGenerator.generate: the cache holds ${options.cache.batchSize} sequences; give a cache of one.`);
    const room = roomInContext(cfg.max_position_embeddings, options, [promptIds]);
    const sequence: Sequence = {
      options,
      sampler: makeSampler(options, { vocabLimit: this.model.vocabLimit }),
      eos: new Set(options.eosTokenIds ?? this.model.eosTokenIds),
      history: [...promptIds],
      queue: new TokenQueue(),
      pending: [...promptIds],
      cache: null,
      maxNew: Math.min(options.maxNewTokens ?? 256, room),
      produced: 0,
      abandoned: false,
    };
    this.waiting.push(sequence);
    this.running ??= this.run().finally(() => (this.running = null));
    return this.stream(sequence);
  }

  private async *stream(sequence: Sequence): AsyncGenerator<number> {
    try {
      yield* sequence.queue.drain();
    } finally {
      sequence.abandoned = true;
    }
  }

  /** The scheduler: alternates one prefill chunk and one decode step until nothing is left. */
  private async run(): Promise<void> {
    while (this.waiting.length || this.prefilling || this.active.length) {
      await nextEventLoopTurn();
      try {
        this.dropCancelled();
        if (this.prefilling || (this.waiting.length && this.active.length < this.maxBatch)) {
          const t0 = performance.now();
          await this.prefillStep();
          this.counters.prefillSeconds += (performance.now() - t0) / 1000;
        }
        if (this.active.length) {
          const t0 = performance.now();
          await this.decodeStep();
          this.counters.decodeSeconds += (performance.now() - t0) / 1000;
        }
      } catch (err) {
        // A failure of the model itself ends every sequence with it, rather than hanging them.
        this.failAll(err);
      }
    }
  }

  private cancelled(sequence: Sequence): unknown {
    if (sequence.options.signal?.aborted) return sequence.options.signal.reason;
    return sequence.abandoned ? new Error('abandoned') : undefined;
  }

  private dropCancelled(): void {
    for (const sequence of [...this.waiting]) {
      const reason = this.cancelled(sequence);
      if (reason !== undefined) {
        this.waiting.splice(this.waiting.indexOf(sequence), 1);
        sequence.queue.end(reason);
      }
    }
    if (this.prefilling) {
      const reason = this.cancelled(this.prefilling);
      if (reason !== undefined) this.finishPrefilling(reason);
    }
    const leaving = this.active.map((s, row) => [row, this.cancelled(s)] as const).filter(([, reason]) => reason !== undefined);
    if (leaving.length)
      this.leave(
        leaving.map(([row]) => row),
        new Map(leaving.map(([row, reason]) => [row, reason])),
      );
  }

  /** Feeds the next chunk of the sequence being prefilled; at its end, samples its first token and lets it join the batch. */
  private async prefillStep(): Promise<void> {
    const sequence = (this.prefilling ??= this.waiting.shift()!);
    sequence.cache ??= sequence.options.cache ?? this.model.makeCache(1, { length: sequence.pending.length + sequence.maxNew });
    const piece = sequence.pending.splice(0, this.prefillChunk);
    const last = sequence.pending.length === 0;
    const logits = tf.tidy(
      () =>
        this.model.model.forward(tf.tensor2d(piece, [1, piece.length], 'int32'), { cache: sequence.cache!, logits: last ? 'last' : 'none' })
          .logits,
    );
    this.counters.prefillTokens += piece.length;
    if (!last) return;
    const values = (await logits!.data()) as Float32Array;
    logits!.dispose();
    this.prefilling = null;
    if (this.emit(sequence, values)) {
      this.finish(sequence, sequence.cache);
      return;
    }
    const joined = this.batch ? stackCaches([this.batch, sequence.cache]) : stackCaches([sequence.cache]);
    this.batch?.dispose();
    this.batch = joined;
    this.active.push(sequence);
    // The caller's cache is written back when the sequence leaves; one of ours is no longer needed.
    if (sequence.cache !== sequence.options.cache) sequence.cache.dispose();
    sequence.cache = null;
  }

  /** One batched decode step: every active sequence's last token in, a new token for each out. */
  private async decodeStep(): Promise<void> {
    const batch = this.batch!;
    const ids = this.active.map((s) => s.history[s.history.length - 1]);
    const logits = tf.tidy(
      () => this.model.model.forward(tf.tensor2d(ids, [ids.length, 1], 'int32'), { cache: batch, logits: 'last' }).logits!,
    );
    const values = (await logits.data()) as Float32Array;
    logits.dispose();
    this.counters.decodeSteps++;
    this.counters.decodeTokens += ids.length;
    const vocab = this.model.config.vocab_size;
    const done = this.active
      .map((_s, row) => row)
      .filter((row) => this.emit(this.active[row], values.subarray(row * vocab, (row + 1) * vocab)));
    if (done.length) this.leave(done, new Map());
  }

  /** Samples a sequence's next token from its logits and hands it over; true when the sequence has ended. */
  private emit(sequence: Sequence, logits: Float32Array): boolean {
    const id = chooseToken(sequence.sampler, logits, sequence.history, this.model.vocabLimit, sequence.options);
    sequence.history.push(id);
    sequence.produced++;
    sequence.queue.push(id);
    return sequence.eos.has(id) || sequence.produced >= sequence.maxNew;
  }

  /** Takes rows out of the decode batch: each ends (with its reason, if any), its state written back to the caller's cache. */
  private leave(rows: readonly number[], reasons: ReadonlyMap<number, unknown>): void {
    const batch = this.batch!;
    for (const row of rows) {
      const sequence = this.active[row];
      const own = sequence.options.cache ? selectRows(batch, [row]) : null;
      this.finish(sequence, own, reasons.get(row));
      own?.dispose();
    }
    const staying = this.active.map((_, row) => row).filter((row) => !rows.includes(row));
    this.active = staying.map((row) => this.active[row]);
    this.batch = staying.length ? selectRows(batch, staying) : null;
    batch.dispose();
  }

  private finishPrefilling(reason: unknown): void {
    const sequence = this.prefilling!;
    this.prefilling = null;
    this.finish(sequence, sequence.cache, reason);
  }

  /** Ends a sequence: `state` (its cache as it ends, made for it) moves into the caller's cache; ours is freed. */
  private finish(sequence: Sequence, state: HybridCache | null, reason?: unknown): void {
    const target = sequence.options.cache;
    if (target && state && state !== target) target.takeFrom(state);
    if (sequence.cache && sequence.cache !== target) sequence.cache.dispose();
    sequence.cache = null;
    sequence.queue.end(reason);
  }

  private failAll(err: unknown): void {
    for (const sequence of this.waiting.splice(0)) sequence.queue.end(err);
    if (this.prefilling) this.finishPrefilling(err);
    for (const sequence of this.active) sequence.queue.end(err);
    this.active = [];
    this.batch?.dispose();
    this.batch = null;
  }

  /** Ends every sequence (their generators throw) and frees the batch's state. */
  close(reason: unknown = new Error('BatchGenerator closed')): void {
    this.failAll(reason);
  }
}
