/**
 * Tool calls in Granite output: `<tool_call>{"name": …, "arguments": {…}}</tool_call>` blocks,
 * parsed from a finished text or incrementally from streamed deltas.
 *
 * A block ends at the first `</tool_call>` that is not inside a JSON string, so arguments that
 * themselves contain the text "</tool_call>" (the template renders them verbatim) stay intact.
 */

export const TOOL_CALL_OPEN = '<tool_call>';
export const TOOL_CALL_CLOSE = '</tool_call>';

/** A well-formed tool call. */
export interface ToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** A `<tool_call>` block whose body is not a valid call; kept so callers can report it. */
export interface InvalidToolCall {
  /** The block's text between the tags (or to the end, if the block never closed). */
  raw: string;
  /** What is wrong, e.g. the JSON parse error or `missing "name"`. */
  error: string;
}

/** Result of {@link parseToolCalls}. */
export interface ParsedToolCalls {
  /** The text outside the tool-call blocks, trimmed. */
  content: string;
  toolCalls: ToolCall[];
  invalidToolCalls: InvalidToolCall[];
}

/** One event of {@link ToolCallStreamParser}. */
export type ToolCallStreamEvent =
  | { type: 'text'; text: string }
  | { type: 'toolCall'; toolCall: ToolCall }
  | { type: 'invalidToolCall'; invalid: InvalidToolCall };

/** Checks a block body and turns it into a call, or says why it is not one. */
export function parseToolCallBody(raw: string): { toolCall: ToolCall } | { invalid: InvalidToolCall } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { invalid: { raw, error: `malformed JSON: ${(err as Error).message}` } };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { invalid: { raw, error: 'expected a JSON object with "name" and "arguments"' } };
  }
  const { name, arguments: args } = value as { name?: unknown; arguments?: unknown };
  if (typeof name !== 'string' || name === '') return { invalid: { raw, error: 'missing "name" (a non-empty string)' } };
  let parsedArgs: unknown = args ?? {};
  // Some models emit the arguments as a JSON string, as OpenAI's wire format does.
  if (typeof parsedArgs === 'string') {
    try {
      parsedArgs = JSON.parse(parsedArgs);
    } catch (err) {
      return { invalid: { raw, error: `"arguments" is a string that is not JSON: ${(err as Error).message}` } };
    }
  }
  if (typeof parsedArgs !== 'object' || parsedArgs === null || Array.isArray(parsedArgs)) {
    return { invalid: { raw, error: '"arguments" must be a JSON object' } };
  }
  return { toolCall: { name, arguments: parsedArgs as Record<string, unknown> } };
}

// Index of the first `</tool_call>` outside a JSON string in `body`, or -1.
function findClose(body: string): number {
  let inString = false;
  let escaped = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '<' && body.startsWith(TOOL_CALL_CLOSE, i)) {
      return i;
    }
  }
  return -1;
}

// Length of the longest suffix of `text` that is a proper prefix of `tag`.
function partialTagSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Incremental tool-call parser for streamed model output. Plain text is passed on as soon as it
 * cannot be the start of `<tool_call>`; each call is emitted when its closing tag arrives.
 *
 * @example
 * const parser = new ToolCallStreamParser();
 * for await (const delta of textDeltas) {
 *   for (const ev of parser.push(delta)) if (ev.type === 'text') process.stdout.write(ev.text);
 * }
 * parser.end();
 */
export class ToolCallStreamParser {
  private buffer = '';
  private inCall = false;
  private ended = false;

  /** Feeds a text delta; returns the events it completes. */
  push(delta: string): ToolCallStreamEvent[] {
    if (this.ended) throw new Error('ToolCallStreamParser.push: the stream has already ended');
    if (typeof delta !== 'string') throw new TypeError(`ToolCallStreamParser.push(delta): expected a string, got ${typeof delta}`);
    this.buffer += delta;
    const events: ToolCallStreamEvent[] = [];
    for (;;) {
      if (!this.inCall) {
        const open = this.buffer.indexOf(TOOL_CALL_OPEN);
        if (open < 0) {
          const keep = partialTagSuffix(this.buffer, TOOL_CALL_OPEN);
          const text = this.buffer.slice(0, this.buffer.length - keep);
          if (text) events.push({ type: 'text', text });
          this.buffer = this.buffer.slice(this.buffer.length - keep);
          return events;
        }
        if (open > 0) events.push({ type: 'text', text: this.buffer.slice(0, open) });
        this.buffer = this.buffer.slice(open + TOOL_CALL_OPEN.length);
        this.inCall = true;
      }
      const close = findClose(this.buffer);
      if (close < 0) return events;
      events.push(blockEvent(this.buffer.slice(0, close).trim()));
      this.buffer = this.buffer.slice(close + TOOL_CALL_CLOSE.length);
      this.inCall = false;
    }
  }

  /**
   * Ends the stream: flushes withheld text, and reports a block that never closed. A block whose
   * closing tag only appears inside an unterminated JSON string is closed at that tag, as a last resort.
   */
  end(): ToolCallStreamEvent[] {
    if (this.ended) return [];
    this.ended = true;
    const events: ToolCallStreamEvent[] = [];
    let rest = this.buffer;
    this.buffer = '';
    while (this.inCall) {
      const close = rest.indexOf(TOOL_CALL_CLOSE);
      if (close < 0) {
        events.push({ type: 'invalidToolCall', invalid: { raw: rest.trim(), error: 'unterminated <tool_call> block' } });
        return events;
      }
      events.push(blockEvent(rest.slice(0, close).trim()));
      rest = rest.slice(close + TOOL_CALL_CLOSE.length);
      const open = rest.indexOf(TOOL_CALL_OPEN);
      const text = open < 0 ? rest : rest.slice(0, open);
      if (text) events.push({ type: 'text', text });
      if (open < 0) break;
      rest = rest.slice(open + TOOL_CALL_OPEN.length);
    }
    if (!this.inCall && rest) events.push({ type: 'text', text: rest });
    return events;
  }
}

function blockEvent(raw: string): ToolCallStreamEvent {
  const parsed = parseToolCallBody(raw);
  return 'toolCall' in parsed ? { type: 'toolCall', toolCall: parsed.toolCall } : { type: 'invalidToolCall', invalid: parsed.invalid };
}

/**
 * Splits finished model output into text and tool calls. Malformed blocks are returned in
 * `invalidToolCalls` with the reason, never dropped silently.
 *
 * @example
 * parseToolCalls('Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>')
 * // { content: 'Sure.', toolCalls: [{ name: 'f', arguments: { x: 1 } }], invalidToolCalls: [] }
 */
export function parseToolCalls(text: string): ParsedToolCalls {
  const parser = new ToolCallStreamParser();
  const events = [...parser.push(text), ...parser.end()];
  const result: ParsedToolCalls = { content: '', toolCalls: [], invalidToolCalls: [] };
  for (const ev of events) {
    if (ev.type === 'text') result.content += ev.text;
    else if (ev.type === 'toolCall') result.toolCalls.push(ev.toolCall);
    else result.invalidToolCalls.push(ev.invalid);
  }
  result.content = result.content.trim();
  return result;
}
