import * as path from 'node:path';
import { ToolCallStreamParser, parseToolCalls, type ToolCallStreamEvent } from '../src/tokenizer/tool_calls';
import { TOKENIZER_DIR, readJson } from './helpers/golden';

describe('parseToolCalls', () => {
  it('returns plain text untouched when there is no call', () => {
    expect(parseToolCalls('Just an answer.')).toEqual({ content: 'Just an answer.', toolCalls: [], invalidToolCalls: [] });
  });

  it('parses content followed by several calls, tolerating whitespace and newlines', () => {
    const out = parseToolCalls(
      'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>\n' +
        '<tool_call>  {"name":"get_weather",\n "arguments":{"city":"東京","unit":"celsius"}}</tool_call>',
    );
    expect(out.content).toBe('Let me check.');
    expect(out.toolCalls).toEqual([
      { name: 'get_weather', arguments: { city: 'Zürich' } },
      { name: 'get_weather', arguments: { city: '東京', unit: 'celsius' } },
    ]);
    expect(out.invalidToolCalls).toEqual([]);
  });

  it('keeps "</tool_call>" inside a JSON string as part of the arguments', () => {
    const out = parseToolCalls('<tool_call>\n{"name": "w", "arguments": {"text": "a</tool_call>b"}}\n</tool_call>');
    expect(out.toolCalls).toEqual([{ name: 'w', arguments: { text: 'a</tool_call>b' } }]);
  });

  it('accepts arguments given as a JSON string, and missing arguments as {}', () => {
    const out = parseToolCalls('<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call><tool_call>{"name": "b"}</tool_call>');
    expect(out.toolCalls).toEqual([
      { name: 'a', arguments: { x: 1 } },
      { name: 'b', arguments: {} },
    ]);
  });

  it('reports malformed blocks with the reason instead of dropping them', () => {
    const out = parseToolCalls(
      'x <tool_call>{"name": "f", "arguments": {"a": 1}</tool_call> y <tool_call>{"arguments": {}}</tool_call>' +
        '<tool_call>[1]</tool_call><tool_call>{"name": "g", "arguments": [1]}</tool_call>',
    );
    expect(out.toolCalls).toEqual([]);
    expect(out.content).toBe('x  y');
    expect(out.invalidToolCalls.map((c) => c.error)).toEqual([
      expect.stringMatching(/^malformed JSON/),
      'missing "name" (a non-empty string)',
      'expected a JSON object with "name" and "arguments"',
      '"arguments" must be a JSON object',
    ]);
    expect(out.invalidToolCalls[0].raw).toBe('{"name": "f", "arguments": {"a": 1}');
  });

  it('reports a block cut off by the end of generation', () => {
    const out = parseToolCalls('ok <tool_call>{"name": "f", "argu');
    expect(out.content).toBe('ok');
    expect(out.invalidToolCalls).toEqual([{ raw: '{"name": "f", "argu', error: 'unterminated <tool_call> block' }]);
  });

  it('closes a block with an unterminated string at the closing tag, as a last resort', () => {
    const out = parseToolCalls('<tool_call>{"name": "f}</tool_call> after');
    expect(out.invalidToolCalls[0].error).toMatch(/malformed JSON/);
    expect(out.content).toBe('after');
  });

  it('round-trips the tool calls of the golden chat case rendered by the template', () => {
    const cases = readJson<{ cases: { name: string; prompt: string }[] }>(path.join(TOKENIZER_DIR, 'chat_cases.json')).cases;
    const prompt = cases.find((c) => c.name === 'json_escaping_and_string_arguments')!.prompt;
    const turn = prompt.split('<|start_of_role|>assistant<|end_of_role|>')[1].split('<|end_of_text|>')[0];
    expect(parseToolCalls(turn).toolCalls).toEqual([
      { name: 'write_file', arguments: { path: 'C:\\notes\\a.txt', text: 'line 1\nline 2' } },
      { name: 'write_file', arguments: { path: '/tmp/ü.txt', text: 'tab\there "q" \\ back</tool_call>' } },
    ]);
  });
});

describe('ToolCallStreamParser', () => {
  const text = 'Sure <b>.\n<tool_call>\n{"name": "f", "arguments": {"q": "<tool_call>"}}\n</tool_call> done <';

  const feed = (chunks: string[]): { perPush: ToolCallStreamEvent[][]; all: ToolCallStreamEvent[] } => {
    const parser = new ToolCallStreamParser();
    const perPush = chunks.map((c) => parser.push(c));
    perPush.push(parser.end());
    return { perPush, all: perPush.flat() };
  };

  const summarize = (events: ToolCallStreamEvent[]) => {
    let text = '';
    const calls: unknown[] = [];
    for (const ev of events) {
      if (ev.type === 'text') text += ev.text;
      else calls.push(ev.type === 'toolCall' ? ev.toolCall : ev.invalid);
    }
    return { text, calls };
  };

  it('gives the same result for every split of the input into two deltas', () => {
    const expected = { text: 'Sure <b>.\n done <', calls: [{ name: 'f', arguments: { q: '<tool_call>' } }] };
    for (let i = 0; i <= text.length; i++) {
      expect(summarize(feed([text.slice(0, i), text.slice(i)]).all)).toEqual(expected);
    }
  });

  it('gives the same result when fed one character at a time', () => {
    expect(summarize(feed([...text]).all)).toEqual({
      text: 'Sure <b>.\n done <',
      calls: [{ name: 'f', arguments: { q: '<tool_call>' } }],
    });
  });

  it('emits plain text immediately and withholds only a possible tag start', () => {
    const parser = new ToolCallStreamParser();
    expect(parser.push('Hello wor')).toEqual([{ type: 'text', text: 'Hello wor' }]);
    expect(parser.push('ld <tool')).toEqual([{ type: 'text', text: 'ld ' }]);
    expect(parser.push('box')).toEqual([{ type: 'text', text: '<toolbox' }]);
    expect(parser.push('<tool_call>{"name": "f", ')).toEqual([]);
    expect(parser.push('"arguments": {}}</tool_')).toEqual([]);
    expect(parser.push('call>tail')).toEqual([
      { type: 'toolCall', toolCall: { name: 'f', arguments: {} } },
      { type: 'text', text: 'tail' },
    ]);
    expect(parser.end()).toEqual([]);
    expect(() => parser.push('x')).toThrow(/already ended/);
  });
});
