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

/** A conversation with one model; see the module comment. */
export class ChatSession {
  /** User and assistant messages so far (the system message is kept apart). */
  messages: ChatMessage[] = [];
  private systemText: string | null = null;
  private cache: HybridCache | null = null;
  /** The exact text whose tokens `cache` holds. */
  private fedText = '';
  private readonly tokenizer: GraniteTokenizer;
  /** Stats of the last completed turn. */
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
   * Streams the reply to `userText`. The conversation and state are updated when the reply ends;
   * a turn that fails or is cancelled leaves the conversation as it was (and drops the state).
   */
  async *turn(userText: string, signal?: AbortSignal): AsyncGenerator<TextEvent> {
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
    const timing = newTiming();
    let done: Extract<TextEvent, { type: 'done' }> | undefined;
    try {
      for await (const event of withTiming(this.model, timing).streamText(newIds, { ...this.sampling, cache, signal })) {
        if (event.type === 'done') done = event;
        yield event;
      }
    } finally {
      if (!done) this.dropState();
    }
    const generated = done!.tokenIds;
    const eos = new Set(this.model.eosTokenIds);
    const endsWithEos = generated.length > 0 && eos.has(generated[generated.length - 1]);
    // Kept with special tokens, so that rendering the conversation again reproduces the text the
    // state holds and the next turn can continue from it.
    const content = this.tokenizer.decode(endsWithEos ? generated.slice(0, -1) : generated, { skipSpecialTokens: false });
    this.messages.push(user, { role: 'assistant', content });
    this.fedText = text + this.tokenizer.decode(generated.slice(0, -1), { skipSpecialTokens: false });
    this.lastTurn = { ...timing, prefillTokens: newIds.length, reusedTokens: reused, contextTokens: cache.seqLength };
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
