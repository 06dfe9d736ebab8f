/**
 * A scripted stand-in for a model behind the server: one character = one token, replies chosen by
 * the test, optional gates that hold a generation until released. Lets server tests cover tool
 * calls, queueing and cancellation exactly, without depending on what random weights produce.
 */
import type { Engine, EngineCache, EngineGenerateOptions } from '../../src/server/engine';
import type { ChatMessage, TextEvent } from '../../src/text_generation';

export class StubCache implements EngineCache {
  static live = 0;
  private disposed = false;

  constructor(public seqLength = 0) {
    StubCache.live++;
  }

  get byteSize(): number {
    return 16 * (this.seqLength + 1);
  }

  clone(): StubCache {
    return new StubCache(this.seqLength);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    StubCache.live--;
  }
}

export interface StubOptions {
  /** The reply to a rendered prompt (default "ok"). */
  reply?: (prompt: string) => string;
  /** Awaited before each token; lets a test hold a generation. */
  beforeToken?: (index: number, signal?: AbortSignal) => Promise<void>;
  contextLength?: number;
}

function textOf(content: ChatMessage['content']): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => ('text' in p && typeof p.text === 'string' ? p.text : '')).join('');
}

export class StubEngine implements Engine {
  readonly id = 'stub-model';
  readonly contextLength: number;
  /** One token per code point: at most 4 bytes of UTF-8. */
  readonly maxTokenBytes = 4;
  /** Texts passed to encode, in order. */
  readonly encoded: string[] = [];
  /** Every call to generate: the new ids fed and the options. */
  readonly calls: { promptIds: readonly number[]; options: EngineGenerateOptions; aborted: boolean }[] = [];

  constructor(private readonly options: StubOptions = {}) {
    this.contextLength = options.contextLength ?? 4096;
  }

  /** A made-up size: 1 KiB plus 16 bytes a position. */
  stateBytes(tokens: number): number {
    return 1024 + 16 * tokens;
  }

  renderChat(messages: readonly ChatMessage[], options: { tools?: readonly unknown[] }): string {
    const tools = options.tools?.length ? `<tools>${JSON.stringify(options.tools)}</tools>` : '';
    return (
      tools +
      messages.map((m) => `<${m.role}>${textOf(m.content)}${m.tool_calls ? JSON.stringify(m.tool_calls) : ''}`).join('') +
      '<assistant>'
    );
  }

  encode(text: string): number[] {
    this.encoded.push(text);
    return [...text].map((c) => c.codePointAt(0)!);
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) if (id > 0x10ffff) throw new RangeError(`${id} is not a token id`);
    return String.fromCodePoint(...ids);
  }

  makeCache(): StubCache {
    return new StubCache();
  }

  async *generate(promptIds: readonly number[], options: EngineGenerateOptions): AsyncGenerator<TextEvent> {
    const call = { promptIds, options, aborted: false };
    this.calls.push(call);
    const cache = options.cache as StubCache;
    const prompt = this.decode(promptIds); // only the new part when resuming
    const reply = [...(this.options.reply?.(prompt) ?? 'ok')].slice(0, options.maxNewTokens);
    let text = '';
    const ids: number[] = [];
    cache.seqLength += promptIds.length;
    try {
      for (let i = 0; i < reply.length; i++) {
        await this.options.beforeToken?.(i, options.signal);
        options.signal?.throwIfAborted();
        ids.push(reply[i].codePointAt(0)!);
        if (i > 0) cache.seqLength++;
        text += reply[i];
        yield { type: 'text', text: reply[i], tokenIds: [ids[ids.length - 1]] };
      }
    } catch (err) {
      call.aborted = true;
      throw err;
    }
    yield { type: 'done', finishReason: 'length', text, tokenIds: ids };
  }
}

/** A promise with its resolve function, to hold and release a generation. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
