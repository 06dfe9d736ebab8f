import { packedByteLength, type WeightDtype } from '@graniteflow/core';
import type { HybridCache } from './cache/hybrid_cache';
import { generateBatch, generateTokens, type BatchStep, type GenerateOptions } from './generation/generate';
import { assertFitsInMemory, estimateMemory, type MemoryEstimate } from './loading/memory';
import type { GenerationConfig } from './loading/generation_config';
import { eosTokenIds, type CausalLM, type CausalLMConfig } from './models/causal_lm';
import type { GraniteTokenizer } from './tokenizer/tokenizer';
import type { ApplyChatTemplateOptions, ChatMessage } from './tokenizer/chat_template';
import { TextStream } from './generation/text_stream';
import { StopStringDetector } from './generation/stop_strings';

/** Options of {@link GraniteModel.encodePrompt}. */
export interface PromptOptions extends Omit<ApplyChatTemplateOptions, 'addGenerationPrompt'> {
  /** Render `input` through the checkpoint's chat template (always, when `input` is a message list). */
  chat?: boolean;
  /** A system message put first when rendering a chat. */
  system?: string;
}

/** Options of {@link GraniteModel.streamText}. */
export interface TextGenerationOptions extends GenerateOptions {
  /** Stop when the text contains one of these; the stop string and what follows are not emitted. */
  stopStrings?: readonly string[];
  /** Leave special tokens out of the text (default true). */
  skipSpecialTokens?: boolean;
}

/** Why a generation ended: an eos token or a stop string (`'stop'`), or the token limit (`'length'`). */
export type FinishReason = 'stop' | 'length';

/** Where a model's weights came from and where their bytes live (see `fromPretrained`). */
export interface WeightsSource {
  /** The folder is a packed checkpoint (the output of `graniteflow quantize` / `quantizeCheckpoint`). */
  packedCheckpoint: boolean;
  /** Its files are memory-mapped: the weights held as stored are views of the file's pages. */
  mapped: boolean;
  /** Why a packed checkpoint is not mapped (read into backend memory instead). */
  notMappedReason?: string;
  /** Bytes of weights that are views of the mapping (nothing copied). */
  mappedBytes: number;
  /** Bytes of weights read, decoded or repacked into memory of their own. */
  copiedBytes: number;
}

/** The weights held in one dtype. */
export interface WeightDtypeSummary {
  dtype: WeightDtype;
  tensors: number;
  parameters: number;
  /** Bytes as held (packed weights at their format's size, float32 at 4 a weight). */
  bytes: number;
}

/** What {@link GraniteModel.streamText} yields: text as it is completed, then a summary. */
export type TextEvent =
  | { type: 'text'; text: string; tokenIds: number[] }
  | { type: 'done'; finishReason: FinishReason; text: string; tokenIds: number[]; stopString?: string };

/**
 * A loaded model with what a user needs around it: its tokenizer and chat template (when the
 * folder has them), its generation defaults, and generation with those defaults filled in.
 * Made by {@link fromPretrained}.
 */
export class GraniteModel<M extends CausalLM = CausalLM> {
  constructor(
    /** The model itself, of the family its config.json names (see `modelFamily`). */
    readonly model: M,
    readonly tokenizer: GraniteTokenizer | null,
    /** The local folder the model was loaded from. */
    readonly folder: string,
    readonly generationConfig: GenerationConfig | null,
    /** The tfjs backend it runs on. */
    readonly backend: string,
    /** Where the weights came from (a float checkpoint read into memory, unless told otherwise). */
    readonly weightsSource: WeightsSource = { packedCheckpoint: false, mapped: false, mappedBytes: 0, copiedBytes: 0 },
  ) {}

  /**
   * What this model needs for `contextLength` positions of `batchSize` sequences (default 1),
   * its weights as held: the load-time check budgets one context (4096 by default); call this
   * before a longer one. Throws `InsufficientMemoryError`, with the estimate and a fix, when the
   * backend cannot hold it; returns the estimate otherwise.
   */
  assertContextFits(contextLength: number, options: { batchSize?: number; prefillChunk?: number } = {}): MemoryEstimate {
    const estimate = estimateMemory(this.config, {
      contextLength,
      batchSize: options.batchSize,
      prefillChunk: options.prefillChunk,
      storedDtypes: this.weightDtypes(),
      mapped: this.weightsSource.mapped,
    });
    assertFitsInMemory(estimate, this.backend);
    return estimate;
  }

  /** Each parameter's dtype as held: `'f32'`, or the packed format. */
  weightDtypes(): Map<string, WeightDtype> {
    return new Map([...this.model.namedParameters()].map(([name, p]) => [name, p.dtype]));
  }

  /** The weights grouped by the dtype they are held in, the most bytes first. */
  weightSummary(): WeightDtypeSummary[] {
    const byDtype = new Map<WeightDtype, WeightDtypeSummary>();
    for (const [, p] of this.model.namedParameters()) {
      const dtype = p.dtype;
      let entry = byDtype.get(dtype);
      if (entry === undefined) byDtype.set(dtype, (entry = { dtype, tensors: 0, parameters: 0, bytes: 0 }));
      entry.tensors++;
      entry.parameters += p.size;
      entry.bytes += dtype === 'f32' ? 4 * p.size : packedByteLength(dtype, p.shape);
    }
    return [...byDtype.values()].sort((a, b) => b.bytes - a.bytes);
  }

  get config(): M['config'] & CausalLMConfig {
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

  /** An empty cache for `batch` sequences; `options.length`: the positions it is expected to hold. */
  makeCache(batch = 1, options: { length?: number } = {}): HybridCache {
    return this.model.makeCache(batch, options);
  }

  private withDefaults(options: GenerateOptions): GenerateOptions {
    return {
      eosTokenIds: this.eosTokenIds,
      vocabLimit: this.vocabLimit,
      padTokenId: this.padTokenId,
      ...options,
    };
  }

  /**
   * `options` with the sampling defaults of the folder's `generation_config.json` (temperature,
   * top-k, top-p, repetition penalty, as transformers reads them) filled in where `options` leaves
   * them unset. {@link generate} itself does not apply them (it is greedy unless told otherwise);
   * `ChatSession` and `createTextGenerator` do, as transformers' `generate` and pipelines do.
   */
  withSamplingDefaults<T extends GenerateOptions>(options: T): T {
    const defaults = this.generationConfig?.sampling ?? {};
    const out = { ...options };
    for (const key of ['temperature', 'topK', 'topP', 'repetitionPenalty'] as const) {
      if (out[key] === undefined && defaults[key] !== undefined) out[key] = defaults[key];
    }
    return out;
  }

  /** Token ids generated from `promptIds` (see {@link generateTokens}), with this model's defaults. */
  generate(promptIds: readonly number[], options: GenerateOptions = {}): AsyncGenerator<number> {
    return generateTokens(this.model, promptIds, this.withDefaults(options));
  }

  /** A batch of prompts, left-padded (see {@link generateBatch}), with this model's defaults. */
  generateBatch(prompts: readonly (readonly number[])[], options: GenerateOptions = {}): AsyncGenerator<BatchStep> {
    return generateBatch(this.model, prompts, this.withDefaults(options));
  }

  private requireTokenizer(): GraniteTokenizer {
    if (this.tokenizer === null) {
      throw new Error(`${this.folder} has no tokenizer.json: text generation needs the model's tokenizer files.`);
    }
    return this.tokenizer;
  }

  /**
   * Token ids of a prompt: plain text encoded as is (no BOS, as Granite expects), or a chat
   * (messages, or text with `chat: true`) rendered through the checkpoint's own template with the
   * assistant turn opened.
   */
  encodePrompt(input: string | readonly ChatMessage[], options: PromptOptions = {}): number[] {
    const tokenizer = this.requireTokenizer();
    const { chat, system, ...templateOptions } = options;
    if (typeof input === 'string' && !chat) return tokenizer.encode(input);
    const messages: ChatMessage[] = typeof input === 'string' ? [{ role: 'user', content: input }] : [...input];
    if (system !== undefined && messages[0]?.role !== 'system') messages.unshift({ role: 'system', content: system });
    return tokenizer.encodeChat(messages, { ...templateOptions, addGenerationPrompt: true });
  }

  /**
   * Generates text from prompt ids, yielding it as it is completed (never splitting a UTF-8
   * character, withholding what may be the start of a stop string), then a `done` event with the
   * whole text and the reason generation ended.
   *
   * @example
   * ```ts
   * const ids = granite.encodePrompt('Write a haiku about rain.', { chat: true });
   * for await (const e of granite.streamText(ids, { maxNewTokens: 48 })) if (e.type === 'text') process.stdout.write(e.text);
   * ```
   */
  async *streamText(promptIds: readonly number[], options: TextGenerationOptions = {}): AsyncGenerator<TextEvent> {
    const tokenizer = this.requireTokenizer();
    const { stopStrings = [], skipSpecialTokens = true, ...generateOptions } = options;
    const eos = new Set(generateOptions.eosTokenIds ?? this.eosTokenIds);
    const stream = new TextStream(tokenizer, { skipSpecialTokens });
    const stops = new StopStringDetector(stopStrings);
    let text = '';
    let pending: number[] = [];
    const tokenIds: number[] = [];
    let finishReason: FinishReason = 'length';
    let stopString: string | undefined;
    for await (const id of this.generate(promptIds, generateOptions)) {
      tokenIds.push(id);
      pending.push(id);
      if (eos.has(id)) {
        finishReason = 'stop';
        break;
      }
      const step = stops.push(stream.push(id));
      if (step.text) {
        text += step.text;
        yield { type: 'text', text: step.text, tokenIds: pending };
        pending = [];
      }
      if (step.stop !== null) {
        finishReason = 'stop';
        stopString = step.stop;
        break;
      }
    }
    if (stopString === undefined) {
      const tail = stops.push(stream.flush());
      const rest = tail.stop !== null ? tail.text : tail.text + stops.flush();
      if (tail.stop !== null) {
        finishReason = 'stop';
        stopString = tail.stop;
      }
      if (rest || pending.length) {
        text += rest;
        yield { type: 'text', text: rest, tokenIds: pending };
      }
    }
    yield { type: 'done', finishReason, text, tokenIds, ...(stopString !== undefined ? { stopString } : {}) };
  }

  /** The whole generated text of a prompt (string or chat), for when streaming is not needed. */
  async complete(input: string | readonly ChatMessage[], options: TextGenerationOptions & PromptOptions = {}): Promise<string> {
    const { chat, system, tools, documents, templateName, ...generation } = options;
    const ids = this.encodePrompt(input, { chat, system, tools, documents, templateName });
    let text = '';
    for await (const event of this.streamText(ids, generation)) if (event.type === 'done') text = event.text;
    return text;
  }

  /** Frees every weight tensor. */
  dispose(): void {
    this.model.dispose();
  }
}
