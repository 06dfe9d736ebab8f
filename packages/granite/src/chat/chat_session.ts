/**
 * A multi-turn conversation that keeps the model's state between turns: each turn feeds only the
 * text that the chat template adds after what the model has already seen (the end of its last
 * reply, the next user message, the assistant header), not the whole conversation again. On a
 * hybrid model that state is small: the Mamba layers' fixed-size states plus the KV of the few
 * attention layers.
 */
import type { HybridCache } from '../cache/hybrid_cache';
import type { GenerateOptions } from '../generation/generate';
import { newTiming, withTiming, type GenerationTiming } from '../generation/timing';
import type { FinishReason, GraniteModel, TextEvent, TextGenerationOptions } from '../granite_model';
import type { ChatMessage } from '../tokenizer/chat_template';
import type { GraniteTokenizer } from '../tokenizer/tokenizer';
import {
  parseToolCalls,
  ToolCallStreamParser,
  type InvalidToolCall,
  type ToolCall,
  type ToolCallStreamEvent,
} from '../tokenizer/tool_calls';
import { StreamedReply } from './streamed_reply';

/** What one turn (one generation) cost. */
export interface TurnStats extends GenerationTiming {
  /** Tokens fed this turn (the new part of the prompt). */
  prefillTokens: number;
  /** Tokens of the prompt already in the saved state, not fed again. */
  reusedTokens: number;
  /** Tokens in the state after the turn. */
  contextTokens: number;
}

/** A tool the model may call. */
export interface ChatTool {
  name: string;
  description?: string;
  /** The arguments' JSON schema, shown to the model. */
  parameters?: Record<string, unknown>;
  /**
   * Runs a call. With a handler, {@link ChatSession.prompt} answers the model's calls itself (the
   * result, JSON-encoded unless it is a string, goes back as a `tool` message) and lets the model
   * go on; without one, the reply ends with the calls for the caller to answer with
   * `prompt([{ role: 'tool', content }])`.
   */
  handler?: (args: Record<string, unknown>) => unknown;
}

/** Sampling and limits of a turn (the session's cache is its own). */
export type ChatGenerationOptions = Omit<TextGenerationOptions, 'cache'>;

/** Options of {@link ChatSession}. */
export interface ChatSessionOptions {
  /** The system message. */
  system?: string;
  /** Tools offered to the model in every turn (rendered by the chat template). */
  tools?: readonly ChatTool[];
  /** Documents for retrieval-augmented generation (rendered by the chat template). */
  documents?: readonly unknown[];
  /** Sampling and limits of every turn; `generation_config.json`'s sampling fills what is unset. */
  generation?: ChatGenerationOptions;
  /** Rounds of tool calls answered by handlers within one `prompt()` before the reply is returned as is (default 4). */
  maxToolRounds?: number;
  /** Saved with the conversation by {@link ChatSession.toJSON}. */
  modelName?: string;
}

/** A tool call the model made in a reply, with what its handler returned. */
export interface ChatToolCallRecord extends ToolCall {
  /** The handler's result (absent when the tool has no handler, or it threw). */
  result?: unknown;
  /** The message of the error the handler threw. */
  error?: string;
}

/** The whole of one {@link ChatSession.prompt}. */
export interface ChatReply {
  /** The reply's text, as streamed: tool-call blocks taken out when the session has tools. */
  text: string;
  /** Tool calls made, in order, over every round. */
  toolCalls: ChatToolCallRecord[];
  /** `<tool_call>` blocks that were not valid calls. */
  invalidToolCalls: InvalidToolCall[];
  /** `'tool_calls'` when the reply ended with calls left for the caller to answer. */
  finishReason: FinishReason | 'tool_calls';
  /** Generations run (1, plus one per round of calls answered by handlers). */
  rounds: number;
  /** The last generation's cost. */
  stats: TurnStats;
}

/** The conversation as {@link ChatSession.toJSON} writes it and {@link ChatSession.restore} reads it. */
export interface SavedChat {
  format: 'graniteflow-chat';
  version: 1;
  model: string;
  system: string | null;
  messages: ChatMessage[];
}

/** A message as the model saw it (`fed`: special tokens kept) and as a reader sees it (`shown`). */
interface HistoryEntry {
  fed: ChatMessage;
  shown: ChatMessage;
}

/** The same model, with every id it generates also appended to `ids` (kept even if the generation is cancelled). */
function recordingTokens(model: GraniteModel, ids: number[]): GraniteModel {
  const recording = Object.create(model) as GraniteModel;
  recording.generate = async function* (promptIds: readonly number[], options?: GenerateOptions) {
    for await (const id of model.generate(promptIds, options)) {
      ids.push(id);
      yield id;
    }
  };
  return recording;
}

/** What a tool returned, as the text of its `tool` message. */
function toolMessageContent(record: ChatToolCallRecord): string {
  if (record.error !== undefined) return `Error: ${record.error}`;
  if (typeof record.result === 'string') return record.result;
  return JSON.stringify(record.result) ?? 'null';
}

/**
 * A conversation with one model; see the module comment.
 *
 * @example
 * ```ts
 * const session = new ChatSession(granite, { system: 'You are terse.' });
 * console.log(await session.prompt('Name a colour.'));
 * for await (const piece of session.prompt('And another?')) process.stdout.write(piece);
 * session.dispose();
 * ```
 */
export class ChatSession {
  private history: HistoryEntry[] = [];
  private systemText: string | null;
  private cache: HybridCache | null = null;
  /** The exact text whose tokens `cache` holds. */
  private fedText = '';
  private busy = false;
  private readonly tokenizer: GraniteTokenizer;
  private readonly generation: ChatGenerationOptions;
  private readonly toolsByName: Map<string, ChatTool>;
  private readonly templateTools: unknown[];
  private readonly documents: readonly unknown[];
  private readonly maxToolRounds: number;
  /** Name saved with the conversation. */
  readonly modelName: string;
  /** Stats of the last turn, once it has ended or been cancelled (null while a turn runs, or if it failed). */
  lastTurn: TurnStats | null = null;

  constructor(
    readonly model: GraniteModel,
    options: ChatSessionOptions = {},
  ) {
    if (model.tokenizer === null)
      throw new Error(`ChatSession: ${model.folder} has no tokenizer.json, so text cannot be encoded or decoded.`);
    this.tokenizer = model.tokenizer;
    this.systemText = options.system ?? null;
    this.generation = model.withSamplingDefaults(options.generation ?? {});
    this.toolsByName = new Map((options.tools ?? []).map((t) => [t.name, t]));
    if (this.toolsByName.size !== (options.tools ?? []).length) throw new Error('ChatSession: two tools have the same name.');
    this.templateTools = (options.tools ?? []).map(({ name, description, parameters }) => ({
      type: 'function',
      function: { name, ...(description !== undefined ? { description } : {}), ...(parameters !== undefined ? { parameters } : {}) },
    }));
    this.documents = options.documents ?? [];
    this.maxToolRounds = options.maxToolRounds ?? 4;
    this.modelName = options.modelName ?? '';
  }

  /** The conversation so far, as a reader sees it (no hidden special tokens); the system message is kept apart. */
  get messages(): ChatMessage[] {
    return this.history.map((h) => ({ ...h.shown }));
  }

  get system(): string | null {
    return this.systemText;
  }

  /** True while a reply is being generated. */
  get generating(): boolean {
    return this.busy;
  }

  /** Sets (or with null, removes) the system message; the next turn starts a fresh state. */
  setSystem(text: string | null): void {
    this.assertIdle('setSystem');
    this.systemText = text;
    this.dropState();
  }

  /** Forgets the conversation and the state. */
  reset(): void {
    this.assertIdle('reset');
    this.history = [];
    this.dropState();
  }

  /**
   * Adds `input` (a user message, or messages such as tool results) and generates the reply.
   * The result can be awaited (the text), iterated (the text as it comes) or both; its `reply`
   * has the tool calls, finish reason and stats. Calls of tools that have handlers are answered
   * and the model goes on, up to `maxToolRounds` rounds.
   *
   * When `options.signal` aborts, the reply so far stays in the conversation (the state already
   * holds it, so the next turn goes on from it) and the result rejects with the signal's reason.
   */
  prompt(input: string | readonly ChatMessage[], options: ChatGenerationOptions = {}): StreamedReply<ChatReply> {
    this.assertIdle('prompt');
    this.busy = true;
    return new StreamedReply<ChatReply>(async (emit) => {
      try {
        return await this.reply(input, options, emit);
      } finally {
        this.busy = false;
      }
    });
  }

  private async reply(
    input: string | readonly ChatMessage[],
    options: ChatGenerationOptions,
    emit: (piece: string) => void,
  ): Promise<ChatReply> {
    const toolCalls: ChatToolCallRecord[] = [];
    const invalidToolCalls: InvalidToolCall[] = [];
    let text = '';
    let next = input;
    for (let rounds = 1; ; rounds++) {
      const parser = this.toolsByName.size ? new ToolCallStreamParser() : null;
      const calls: ChatToolCallRecord[] = [];
      const take = (events: ToolCallStreamEvent[]) => {
        for (const event of events) {
          if (event.type === 'text') {
            text += event.text;
            emit(event.text);
          } else if (event.type === 'toolCall') {
            calls.push({ ...event.toolCall });
          } else {
            invalidToolCalls.push(event.invalid);
          }
        }
      };
      let finishReason: FinishReason = 'length';
      for await (const event of this.runTurn(next, options)) {
        if (event.type === 'done') finishReason = event.finishReason;
        else if (parser) take(parser.push(event.text));
        else take([{ type: 'text', text: event.text }]);
      }
      if (parser) take(parser.end());
      toolCalls.push(...calls);
      const answerable = calls.length > 0 && calls.every((c) => this.toolsByName.get(c.name)?.handler !== undefined);
      if (!answerable || rounds > this.maxToolRounds) {
        return {
          text,
          toolCalls,
          invalidToolCalls,
          finishReason: calls.length ? 'tool_calls' : finishReason,
          rounds,
          stats: this.lastTurn!,
        };
      }
      for (const call of calls) {
        try {
          call.result = await this.toolsByName.get(call.name)!.handler!(call.arguments);
        } catch (err) {
          call.error = err instanceof Error ? err.message : String(err);
        }
      }
      options.signal?.throwIfAborted();
      next = calls.map((call) => ({ role: 'tool', content: toolMessageContent(call) }));
    }
  }

  /**
   * One generation, as the model's events (text as it is completed, then `done`): the lower
   * level under {@link prompt}, without tool handling. Same cancellation contract as `prompt`.
   */
  async *turn(input: string | readonly ChatMessage[], options: ChatGenerationOptions = {}): AsyncGenerator<TextEvent> {
    this.assertIdle('turn');
    this.busy = true;
    try {
      yield* this.runTurn(input, options);
    } finally {
      this.busy = false;
    }
  }

  private async *runTurn(input: string | readonly ChatMessage[], options: ChatGenerationOptions): AsyncGenerator<TextEvent> {
    this.lastTurn = null;
    const added: ChatMessage[] = typeof input === 'string' ? [{ role: 'user', content: input }] : [...input];
    if (added.length === 0) throw new Error('ChatSession: nothing to reply to (an empty list of messages).');
    const text = this.render([...this.history.map((h) => h.fed), ...added]);
    let newIds: number[];
    let reused = 0;
    if (this.cache && text.length > this.fedText.length && text.startsWith(this.fedText)) {
      newIds = this.tokenizer.encode(text.slice(this.fedText.length));
      reused = this.cache.seqLength;
    } else {
      this.dropState();
      this.cache = this.model.makeCache();
      newIds = this.tokenizer.encode(text);
    }
    const cache = this.cache!;
    const promptEnd = reused + newIds.length;
    const timing = newTiming();
    const generated: number[] = [];
    const model = withTiming(recordingTokens(this.model, generated), timing);
    const recordStats = () => {
      this.lastTurn = { ...timing, prefillTokens: newIds.length, reusedTokens: reused, contextTokens: cache.seqLength };
    };
    let settled = false;
    try {
      for await (const event of model.streamText(newIds, { ...this.generation, ...options, cache })) {
        if (event.type === 'done') {
          this.remember(added, text, generated, promptEnd);
          recordStats();
          settled = true;
        }
        yield event;
      }
    } catch (err) {
      // An abort is seen between steps, so the state is whole: still the one before this turn
      // (nothing was fed yet), or that plus the prompt and the reply so far.
      if (options.signal?.aborted && (cache.seqLength === reused || cache.seqLength >= promptEnd)) {
        if (cache.seqLength >= promptEnd) this.remember(added, text, generated, promptEnd);
        recordStats();
        settled = true;
      }
      throw err;
    } finally {
      if (!settled) this.dropState();
    }
  }

  private render(messages: readonly ChatMessage[]): string {
    const system: ChatMessage[] = this.systemText !== null ? [{ role: 'system', content: this.systemText }] : [];
    return this.tokenizer.applyChatTemplate([...system, ...messages], {
      addGenerationPrompt: true,
      ...(this.templateTools.length ? { tools: this.templateTools } : {}),
      ...(this.documents.length ? { documents: this.documents } : {}),
    });
  }

  /**
   * Adds the turn to the conversation: `generated` is the reply so far, of which the state holds
   * the part past `promptEnd` (all of it, or all but the last token, which is fed next turn).
   */
  private remember(added: readonly ChatMessage[], text: string, generated: readonly number[], promptEnd: number): void {
    const fed = this.cache!.seqLength - promptEnd;
    const eos = new Set(this.model.eosTokenIds);
    const reply = generated.length > 0 && eos.has(generated[generated.length - 1]) ? generated.slice(0, -1) : generated;
    // Kept with special tokens, so that rendering the conversation again reproduces the text the
    // state holds and the next turn can continue from it; shown without them.
    const fedReply: ChatMessage = { role: 'assistant', content: this.tokenizer.decode(reply, { skipSpecialTokens: false }) };
    this.history.push(...added.map((m) => ({ fed: m, shown: m })), {
      fed: fedReply,
      shown: this.shownReply(this.tokenizer.decode(reply, { skipSpecialTokens: true })),
    });
    this.fedText = text + this.tokenizer.decode(generated.slice(0, fed), { skipSpecialTokens: false });
  }

  /** A reply as a reader sees it: with tools, its calls as `tool_calls` rather than markup. */
  private shownReply(content: string): ChatMessage {
    if (this.toolsByName.size === 0) return { role: 'assistant', content };
    const parsed = parseToolCalls(content);
    if (parsed.toolCalls.length === 0) return { role: 'assistant', content };
    return { role: 'assistant', content: parsed.content === '' ? null : parsed.content, tool_calls: parsed.toolCalls };
  }

  private dropState(): void {
    this.cache?.dispose();
    this.cache = null;
    this.fedText = '';
  }

  private assertIdle(method: string): void {
    if (this.busy) throw new Error(`ChatSession.${method}: a reply is still being generated; await it (or abort it) first.`);
  }

  /** The conversation as a {@link SavedChat}, as a reader sees it. */
  toJSON(): SavedChat {
    return { format: 'graniteflow-chat', version: 1, model: this.modelName, system: this.systemText, messages: this.messages };
  }

  /**
   * Replaces the conversation by a saved one (as {@link toJSON} wrote it); the next turn feeds it
   * to the model once. Throws a `TypeError` saying what is wrong with `saved`.
   */
  restore(saved: unknown): void {
    this.assertIdle('restore');
    const chat = saved as Partial<SavedChat> | null;
    if (typeof chat !== 'object' || chat === null || chat.format !== 'graniteflow-chat' || !Array.isArray(chat.messages)) {
      throw new TypeError('not a saved graniteflow conversation (expected {"format": "graniteflow-chat", "messages": [...]})');
    }
    const bad = chat.messages.findIndex((m) => typeof m !== 'object' || m === null || typeof m.role !== 'string');
    if (bad >= 0) throw new TypeError(`message ${bad} has no "role"`);
    this.history = chat.messages.map((m) => ({ fed: m, shown: m }));
    this.systemText = typeof chat.system === 'string' ? chat.system : null;
    this.dropState();
  }

  /** Frees the state. */
  dispose(): void {
    this.dropState();
  }
}
