import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChatTemplate, ChatTemplateError, type ChatMessage } from '../src/tokenizer/chat_template';
import { pythonFloatRepr } from '../src/tokenizer/python_json';
import { GraniteTokenizer } from '../src/tokenizer/tokenizer';
import { CHAT_TINY_DIR, TOKENIZER_DIR, readJson } from './helpers/golden';

interface ChatCase {
  name: string;
  messages: ChatMessage[];
  tools?: unknown[];
  documents?: unknown[];
  add_generation_prompt: boolean;
  prompt: string;
  ids: number[];
}

const chatCases = readJson<{ cases: ChatCase[] }>(path.join(TOKENIZER_DIR, 'chat_cases.json')).cases;
const tokenizerJson = readJson(path.join(TOKENIZER_DIR, 'tokenizer.json'));
const tokenizerConfig = readJson<Record<string, unknown>>(path.join(TOKENIZER_DIR, 'tokenizer_config.json'));
let fromJinjaFile: GraniteTokenizer;
let fromConfig: GraniteTokenizer;

beforeAll(async () => {
  fromJinjaFile = await GraniteTokenizer.fromFolder(TOKENIZER_DIR);
  fromConfig = await GraniteTokenizer.fromFolder(CHAT_TINY_DIR);
});

const render = (t: GraniteTokenizer, c: ChatCase): string =>
  t.applyChatTemplate(c.messages, { tools: c.tools, documents: c.documents, addGenerationPrompt: c.add_generation_prompt });

describe('chat template golden cases', () => {
  it.each(chatCases.map((c) => [c.name, c] as const))('%s: prompt and ids (chat_template.jinja)', (_n, c) => {
    expect(fromJinjaFile.chatTemplate?.source).toMatch(/chat_template\.jinja$/);
    expect(render(fromJinjaFile, c)).toBe(c.prompt);
    expect(
      fromJinjaFile.encodeChat(c.messages, { tools: c.tools, documents: c.documents, addGenerationPrompt: c.add_generation_prompt }),
    ).toEqual(c.ids);
  });

  it.each(chatCases.map((c) => [c.name, c] as const))('%s: prompt (tokenizer_config.json chat_template)', (_n, c) => {
    expect(render(fromConfig, c)).toBe(c.prompt);
  });
});

describe('chat_tiny text expectations (the model folder the generation tests use)', () => {
  interface TextCase {
    kind: 'plain' | 'chat';
    prompt: string;
    messages?: ChatMessage[];
    prompt_ids: number[];
    new_ids: number[];
    text: string;
  }
  const textCases = readJson<{ cases: TextCase[] }>(path.join(CHAT_TINY_DIR, 'text_expectations.json')).cases;

  it.each(textCases.map((c, i) => [i, c.kind, c] as const))('case %i (%s): prompt, prompt ids and decoded text', (_i, kind, c) => {
    if (kind === 'chat') {
      expect(fromConfig.applyChatTemplate(c.messages!, { addGenerationPrompt: true })).toBe(c.prompt);
      expect(fromConfig.encodeChat(c.messages!, { addGenerationPrompt: true })).toEqual(c.prompt_ids);
    } else {
      expect(fromConfig.encode(c.prompt)).toEqual(c.prompt_ids);
    }
    expect(fromConfig.decode(c.new_ids, { skipSpecialTokens: true })).toBe(c.text);
  });
});

describe('tojson like transformers (json.dumps, ensure_ascii=False, insertion order)', () => {
  const t = (src: string, vars: Record<string, unknown> = {}): string => ChatTemplate.parse(src, 'test template').apply([], vars);

  it('prints template float literals like Python', () => {
    expect(t('{{ 1.0 | tojson }} {{ [1.5, 2.0, -0.0] | tojson }} {{ {"a": 0.0000001, "b": 10000000000000000.0} | tojson }}')).toBe(
      '1.0 [1.5, 2.0, -0.0] {"a": 1e-07, "b": 1e+16}',
    );
  });

  it('neither escapes HTML nor sorts keys; keeps non-ASCII', () => {
    expect(t('{{ x | tojson }}', { x: { z: '<&>', a: 'é', n: null, b: true } })).toBe('{"z": "<&>", "a": "é", "n": null, "b": true}');
  });

  it('supports indent, sort_keys, separators and ensure_ascii', () => {
    expect(t('{{ x | tojson(indent=2, sort_keys=true) }}', { x: { b: [1], a: {} } })).toBe('{\n  "a": {},\n  "b": [\n    1\n  ]\n}');
    expect(t('{{ x | tojson(separators=(",", ":")) }}', { x: { a: [1, 2] } })).toBe('{"a":[1,2]}');
    expect(t('{{ "é😀" | tojson(ensure_ascii=true) }}')).toBe('"\\u00e9\\ud83d\\ude00"');
  });

  it('documents the limit: an integral JavaScript number prints as an integer', () => {
    expect(t('{{ x | tojson }}', { x: { default: 1.0, ratio: 0.5 } })).toBe('{"default": 1, "ratio": 0.5}');
  });

  it('pythonFloatRepr matches Python repr', () => {
    const cases: [number, string][] = [
      [1, '1.0'],
      [0.1, '0.1'],
      [1e-4, '0.0001'],
      [1e-5, '1e-05'],
      [123456789012345.6, '123456789012345.6'],
      [1e15, '1000000000000000.0'],
      [1.5e16, '1.5e+16'],
      [1e22, '1e+22'],
      [-2.5e-10, '-2.5e-10'],
      [NaN, 'NaN'],
    ];
    for (const [x, repr] of cases) expect(pythonFloatRepr(x)).toBe(repr);
  });
});

describe('template selection and errors', () => {
  it('picks "tool_use" with tools and "default" without from a list of named templates', () => {
    const config = {
      ...tokenizerConfig,
      chat_template: [
        { name: 'default', template: 'D{{ messages | length }}' },
        { name: 'tool_use', template: 'T{{ tools | length }}' },
      ],
    };
    const tok = GraniteTokenizer.fromJSON(tokenizerJson, config);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toBe('D1');
    expect(tok.applyChatTemplate([], { tools: [{}, {}] })).toBe('T2');
    expect(tok.applyChatTemplate([], { templateName: 'default' })).toBe('D0');
    expect(() => tok.applyChatTemplate([], { templateName: 'rag' })).toThrow(/no template named "rag" \(available: default, tool_use\)/);
  });

  it('exposes bos/eos/pad/unk tokens and extra variables to the template', () => {
    const tok = GraniteTokenizer.fromJSON(
      tokenizerJson,
      tokenizerConfig,
      '{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ unk_token }}|{{ thinking }}',
    );
    expect(tok.applyChatTemplate([], { thinking: true })).toBe('<|end_of_text|>|<|end_of_text|>|<|pad|>|<|unk|>|true');
  });

  it('names the template source on parse and render errors', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-chat-'));
    try {
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TOKENIZER_DIR, f), path.join(dir, f));
      fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% if %}');
      await expect(GraniteTokenizer.fromFolder(dir)).rejects.toThrow(ChatTemplateError);
      await expect(GraniteTokenizer.fromFolder(dir)).rejects.toThrow(/chat_template\.jinja/);
      fs.writeFileSync(path.join(dir, 'chat_template.jinja'), "{{ raise_exception('roles must alternate') }}");
      const tok = await GraniteTokenizer.fromFolder(dir);
      expect(() => tok.applyChatTemplate([])).toThrow(/chat_template\.jinja failed: roles must alternate/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails clearly without a template', () => {
    const { chat_template: _dropped, ...config } = tokenizerConfig;
    void _dropped;
    const tok = GraniteTokenizer.fromJSON(tokenizerJson, config);
    expect(() => tok.applyChatTemplate([])).toThrow(/no chat template/);
  });
});
