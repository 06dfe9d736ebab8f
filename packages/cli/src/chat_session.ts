/**
 * A multi-turn conversation that keeps the model's state between turns: each turn feeds only the
 * text that the chat template adds after what the model has already seen (the end of its last
 * reply, the next user message, the assistant header), not the whole conversation again.
 */
import * as fs from 'node:fs';
import type { GenerateOptions, GraniteModel, GraniteTokenizer, HybridCache } from '@graniteflow/granite';
import { CliError } from './errors';
import { newTiming, renderChat, requireTokenizer, withTiming, type ChatMessage, type GenerationTiming, type TextEvent } from './text_generation';

/** What one turn cost. */
export interface TurnStats extends GenerationTiming {
  /** Tokens fed this turn (the new part of the prompt). */
  prefillTokens: number;
  /** Tokens of the prompt already in the saved state, not fed again. */
  reusedTokens: number;
  /** Tokens in the state after the turn. */
  contextTokens: number;
}

/** The file written by `/save` and read by `/load`. */
export interface SavedChat {
  format: 'graniteflow-chat';
  version: 1;
  model: string;
  system: string | null;
  messages: ChatMessage[];
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

/** A conversation with one model; see the module comment. */
export class ChatSession {
  /** User and assistant messages so far (the system message is kept apart). */
  messages: ChatMessage[] = [];
  private systemText: string | null = null;
  private cache: HybridCache | null = null;
  /** The exact text whose tokens `cache` holds. */
  private fedText = '';
  private readonly tokenizer: GraniteTokenizer;
  /** Stats of the last turn, once it has ended or been cancelled (null while a turn runs, or if it failed). */
  lastTurn: TurnStats | null = null;

  constructor(
    private readonly model: GraniteModel,
    private readonly sampling: GenerateOptions = {},
    /** Name saved with the conversation. */
    readonly modelName = '',
  ) {
    this.tokenizer = requireTokenizer(model);
  }

  get system(): string | null {
    return this.systemText;
  }

  /** Sets (or with null, removes) the system message; the next turn starts a fresh state. */
  setSystem(text: string | null): void {
    this.systemText = text;
    this.dropState();
  }

  /** Forgets the conversation and the state. */
  reset(): void {
    this.messages = [];
    this.dropState();
  }

  private dropState(): void {
    this.cache?.dispose();
    this.cache = null;
    this.fedText = '';
  }

  private conversation(extra: ChatMessage[]): ChatMessage[] {
    return [...(this.systemText !== null ? [{ role: 'system', content: this.systemText }] : []), ...this.messages, ...extra];
  }

  /**
   * Streams the reply to `userText`; the conversation and state are updated when the reply ends.
   * When `signal` aborts, the reply generated so far is kept as if it had ended there (as one cut
   * short by the token limit is), since the state already holds it: the next turn goes on from
   * it. The generator then throws the signal's reason. A turn that fails leaves the conversation
   * as it was (and drops the state).
   */
  async *turn(userText: string, signal?: AbortSignal): AsyncGenerator<TextEvent> {
    this.lastTurn = null;
    const user: ChatMessage = { role: 'user', content: userText };
    const text = renderChat(this.tokenizer, this.conversation([user]));
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
      for await (const event of model.streamText(newIds, { ...this.sampling, cache, signal })) {
        if (event.type === 'done') {
          this.remember(user, text, generated, promptEnd);
          recordStats();
          settled = true;
        }
        yield event;
      }
    } catch (err) {
      // An abort is seen between steps, so the state is whole: still the one before this turn
      // (nothing was fed yet), or that plus the prompt and the reply so far.
      if (signal?.aborted && (cache.seqLength === reused || cache.seqLength >= promptEnd)) {
        if (cache.seqLength >= promptEnd) this.remember(user, text, generated, promptEnd);
        recordStats();
        settled = true;
      }
      throw err;
    } finally {
      if (!settled) this.dropState();
    }
  }

  /**
   * Adds the turn to the conversation: `generated` is the reply so far, of which the state holds
   * the part past `promptEnd` (all of it, or all but the last token, which is fed next turn).
   */
  private remember(user: ChatMessage, text: string, generated: readonly number[], promptEnd: number): void {
    const fed = this.cache!.seqLength - promptEnd;
    const eos = new Set(this.model.eosTokenIds);
    const endsWithEos = generated.length > 0 && eos.has(generated[generated.length - 1]);
    // Kept with special tokens, so that rendering the conversation again reproduces the text the
    // state holds and the next turn can continue from it.
    const content = this.tokenizer.decode(endsWithEos ? generated.slice(0, -1) : generated, { skipSpecialTokens: false });
    this.messages.push(user, { role: 'assistant', content });
    this.fedText = text + this.tokenizer.decode(generated.slice(0, fed), { skipSpecialTokens: false });
  }

  /** The conversation as a {@link SavedChat}. */
  toJSON(): SavedChat {
    return { format: 'graniteflow-chat', version: 1, model: this.modelName, system: this.systemText, messages: this.messages };
  }

  /** Writes the conversation to `file` (JSON). */
  save(file: string): void {
    fs.writeFileSync(file, JSON.stringify(this.toJSON(), null, 2) + '\n');
  }

  /** Replaces the conversation by the one in `file`; the next turn feeds it to the model once. */
  load(file: string): void {
    let saved: SavedChat;
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8')) as SavedChat;
    } catch (err) {
      throw new CliError(`Cannot read a conversation from ${file}: ${(err as Error).message}`);
    }
    if (saved?.format !== 'graniteflow-chat' || !Array.isArray(saved.messages)) {
      throw new CliError(`${file} is not a conversation saved by graniteflow chat (/save).`);
    }
    const valid = saved.messages.every((m) => typeof m === 'object' && m !== null && typeof m.role === 'string');
    if (!valid) throw new CliError(`${file} has a message without a "role".`);
    this.messages = saved.messages;
    this.systemText = typeof saved.system === 'string' ? saved.system : null;
    this.dropState();
  }

  /** Frees the state. */
  dispose(): void {
    this.dropState();
  }
}
