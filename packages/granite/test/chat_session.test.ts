// ChatSession and createTextGenerator on the golden chat_tiny model: state reuse between turns equals
// recomputing the same tokens, cancelled turns, tool calls answered by handlers, what a reader sees.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ChatSession, createTextGenerator, fromPretrained, type GenerateOptions, type GraniteModel, type HybridCache } from '../src';
import { CHAT_TINY_DIR } from './helpers/golden';

/** One call of `generate`: what it was fed, what it yielded, and the cache's length around it. */
interface GenerateCall {
  promptIds: number[];
  ids: number[];
  cache: HybridCache;
  before: number;
  after: number;
}

/** The model, with every call of `generate` recorded into `calls`. */
function watched(model: GraniteModel, calls: GenerateCall[]): GraniteModel {
  const spy = Object.create(model) as GraniteModel;
  spy.generate = async function* (promptIds: readonly number[], options: GenerateOptions = {}) {
    const cache = options.cache!;
    const call: GenerateCall = { promptIds: [...promptIds], ids: [], cache, before: cache.seqLength, after: -1 };
    calls.push(call);
    try {
      for await (const id of model.generate(promptIds, options)) {
        call.ids.push(id);
        yield id;
      }
    } finally {
      call.after = cache.seqLength;
    }
  };
  return spy;
}

/**
 * The model, made to reply with the given texts in turn (each followed by the eos token), the cache
 * left as a real generation of those tokens leaves it: the prompt and all replied tokens but the last fed.
 */
function scripted(model: GraniteModel, replies: string[], prompts: number[][] = []): GraniteModel {
  const spy = Object.create(model) as GraniteModel;
  spy.generate = async function* (promptIds: readonly number[], options: GenerateOptions = {}) {
    prompts.push([...promptIds]);
    const reply = [...model.tokenizer!.encode(replies.shift()!), model.eosTokenIds[0]];
    for await (const _ of model.generate([...promptIds, ...reply.slice(0, -1)], { ...options, maxNewTokens: 1 }));
    yield* reply;
  };
  return spy;
}

/** The tokens held by a cache after `calls`, worked out from what each call fed and its growth. */
function heldIds(calls: readonly GenerateCall[]): number[] {
  return calls.flatMap((c) => [...c.promptIds, ...c.ids.slice(0, c.after - c.before - c.promptIds.length)]);
}

/** Greedy text of `ids` fed at once to a fresh state. */
async function greedyText(model: GraniteModel, ids: readonly number[], maxNewTokens: number): Promise<string> {
  let text = '';
  for await (const e of model.streamText(ids, { maxNewTokens, temperature: 0 })) if (e.type === 'done') text = e.text;
  return text;
}

/** Runs a turn, aborting it from a timer (as a Ctrl-C handler does) once `afterTexts` text events arrived. */
async function cancelledTurn(session: ChatSession, text: string, afterTexts: number): Promise<void> {
  const controller = new AbortController();
  let texts = 0;
  const reply = session.prompt(text, { signal: controller.signal });
  const read = async () => {
    for await (const _ of reply) if (++texts === afterTexts) setTimeout(() => controller.abort(), 0);
  };
  await expect(read()).rejects.toThrow(/abort/i);
  await expect(reply.reply).rejects.toThrow(/abort/i);
}

const GREEDY = { maxNewTokens: 16, temperature: 0 };
let granite: GraniteModel;
let tensorsBefore: number;
beforeAll(async () => {
  granite = await fromPretrained(CHAT_TINY_DIR, { backend: 'wasm' });
  tensorsBefore = tf.memory().numTensors;
});
afterAll(() => {
  // Every session below was disposed: nothing but the weights is left.
  expect(tf.memory().numTensors).toBe(tensorsBefore);
  granite.dispose();
});

describe('ChatSession.prompt', () => {
  test('streams and resolves the same text: what a greedy generation from the rendered chat gives', async () => {
    const session = new ChatSession(granite, { generation: GREEDY });
    const response = session.prompt('Hello');
    const pieces: string[] = [];
    for await (const piece of response) pieces.push(piece);
    const text = await response;
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join('')).toBe(text);
    expect(text).toBe(await greedyText(granite, granite.encodePrompt('Hello', { chat: true }), 16));
    const reply = await response.reply;
    expect(reply).toMatchObject({ text, finishReason: 'length', rounds: 1, toolCalls: [] });
    expect(reply.stats).toMatchObject({ generatedTokens: 16, reusedTokens: 0 });
    // Iterating again after the end replays the whole reply.
    const again: string[] = [];
    for await (const piece of response) again.push(piece);
    expect(again).toEqual(pieces);
    session.dispose();
  });

  test('the next turn feeds only the new text, and replies as the same tokens fed at once to a fresh state do', async () => {
    const calls: GenerateCall[] = [];
    const session = new ChatSession(watched(granite, calls), { generation: GREEDY, system: 'Be brief.' });
    await session.prompt('Hello');
    const second = await session.prompt('Tell me more').reply;
    expect(calls).toHaveLength(2);
    expect(calls[1].cache).toBe(calls[0].cache);
    expect(second.stats.reusedTokens).toBe(calls[0].after);
    expect(second.stats.prefillTokens).toBe(calls[1].promptIds.length);
    // The state held exactly the conversation as the chat template renders it...
    const tokenizer = granite.tokenizer!;
    const fedFirstReply = tokenizer.decode(calls[0].ids, { skipSpecialTokens: false });
    const conversation = tokenizer.applyChatTemplate(
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
        { role: 'assistant', content: fedFirstReply },
        { role: 'user', content: 'Tell me more' },
      ],
      { addGenerationPrompt: true },
    );
    const held = [...heldIds(calls.slice(0, 1)), ...calls[1].promptIds];
    expect(tokenizer.decode(held, { skipSpecialTokens: false })).toBe(conversation);
    expect(calls[1].promptIds.length).toBeLessThan(held.length / 2);
    // ...and resuming it gives what recomputing it all gives.
    expect(second.text).toBe(await greedyText(granite, held, 16));
    expect(session.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    session.dispose();
  });

  test('a cancelled reply is kept as far as it went; the next turn resumes the state', async () => {
    const calls: GenerateCall[] = [];
    // Greedy replies of the random weights run for thousands of tokens: only an abort ends these.
    const session = new ChatSession(watched(granite, calls), { generation: { maxNewTokens: 3000, temperature: 0 } });
    await cancelledTurn(session, 'Hello', 20);
    const [first] = calls;
    expect(first.ids.length).toBeLessThan(1000);
    expect(session.messages).toEqual([
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: granite.tokenizer!.decode(first.ids, { skipSpecialTokens: true }) },
    ]);
    expect(session.lastTurn).toMatchObject({ generatedTokens: first.ids.length, contextTokens: first.after });
    expect(session.generating).toBe(false);

    await cancelledTurn(session, 'Go on', 5);
    expect(calls[1].cache).toBe(first.cache);
    expect(calls[1].before).toBe(first.after);
    expect(session.messages).toHaveLength(4);

    // Aborted before anything was fed: the conversation and the state stay as they were.
    const before = session.messages;
    const aborted = new AbortController();
    aborted.abort();
    await expect(session.prompt('Never fed', { signal: aborted.signal }).reply).rejects.toThrow(/abort/i);
    expect(session.messages).toEqual(before);
    await cancelledTurn(session, 'Again', 3);
    expect(calls[3].cache).toBe(first.cache);
    expect(calls[3].before).toBe(calls[1].after);
    session.dispose();
  });

  test('one reply at a time: prompt() during a reply is refused', async () => {
    const session = new ChatSession(granite, { generation: { maxNewTokens: 4, temperature: 0 } });
    const running = session.prompt('Hello');
    expect(session.generating).toBe(true);
    expect(() => session.prompt('Too soon')).toThrow(/still being generated/);
    expect(() => session.reset()).toThrow(/still being generated/);
    await running;
    expect(session.generating).toBe(false);
    await session.prompt('Now');
    session.dispose();
  });
});

describe('ChatSession tools', () => {
  const addTool = {
    name: 'add',
    description: 'Adds two numbers',
    parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'] },
  };
  const CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>';

  test('calls of a tool with a handler are answered and the model goes on; the stream carries only text', async () => {
    const prompts: number[][] = [];
    const seen: unknown[] = [];
    const tools = [
      {
        ...addTool,
        handler: (args: Record<string, unknown>) => {
          seen.push(args);
          return (args.a as number) + (args.b as number);
        },
      },
    ];
    const session = new ChatSession(scripted(granite, [CALL, 'The sum is 5.'], prompts), { tools });
    const response = session.prompt('What is 2 + 3?');
    const pieces: string[] = [];
    for await (const piece of response) pieces.push(piece);
    const reply = await response.reply;
    expect(seen).toEqual([{ a: 2, b: 3 }]);
    expect(reply).toMatchObject({ text: 'The sum is 5.', finishReason: 'stop', rounds: 2 });
    expect(reply.toolCalls).toEqual([{ name: 'add', arguments: { a: 2, b: 3 }, result: 5 }]);
    expect(pieces.join('')).toBe('The sum is 5.');
    // The tools were shown to the model, and the second round fed only the tool's answer.
    const tokenizer = granite.tokenizer!;
    expect(tokenizer.decode(prompts[0], { skipSpecialTokens: false })).toContain('Adds two numbers');
    const toolTurn = tokenizer.decode(prompts[1], { skipSpecialTokens: false });
    expect(toolTurn).toContain('5');
    expect(toolTurn).not.toContain('What is 2 + 3?');
    expect(reply.stats.reusedTokens).toBeGreaterThan(0);
    expect(session.messages).toEqual([
      { role: 'user', content: 'What is 2 + 3?' },
      { role: 'assistant', content: null, tool_calls: [{ name: 'add', arguments: { a: 2, b: 3 } }] },
      { role: 'tool', content: '5' },
      { role: 'assistant', content: 'The sum is 5.' },
    ]);
    session.dispose();
  });

  test('without a handler the reply ends with the calls; the caller answers with a tool message', async () => {
    const session = new ChatSession(scripted(granite, [CALL, 'It is 5.']), { tools: [addTool] });
    const first = await session.prompt('What is 2 + 3?').reply;
    expect(first).toMatchObject({ text: '', finishReason: 'tool_calls', toolCalls: [{ name: 'add', arguments: { a: 2, b: 3 } }] });
    const second = await session.prompt([{ role: 'tool', content: '5' }]).reply;
    expect(second).toMatchObject({ text: 'It is 5.', finishReason: 'stop' });
    expect(second.stats.reusedTokens).toBeGreaterThan(0);
    session.dispose();
  });

  test('a handler that throws sends the error back to the model', async () => {
    const prompts: number[][] = [];
    const tools = [
      {
        ...addTool,
        handler: () => {
          throw new Error('no numbers today');
        },
      },
    ];
    const session = new ChatSession(scripted(granite, [CALL, 'Sorry.'], prompts), { tools });
    const reply = await session.prompt('What is 2 + 3?').reply;
    expect(reply.toolCalls).toEqual([{ name: 'add', arguments: { a: 2, b: 3 }, error: 'no numbers today' }]);
    expect(granite.tokenizer!.decode(prompts[1])).toContain('Error: no numbers today');
    session.dispose();
  });
});

test('messages, toJSON and restore show the reply without the special tokens the screen hid; the state still resumes', async () => {
  const session = new ChatSession(scripted(granite, ['<think_on>Fine, thanks.', 'Bye.']));
  expect(await session.prompt('How are you?')).toBe('Fine, thanks.');
  expect(session.messages[1]).toEqual({ role: 'assistant', content: 'Fine, thanks.' });
  expect(JSON.stringify(session.toJSON())).not.toContain('think_on');
  const next = await session.prompt('Bye').reply;
  expect(next.stats.reusedTokens).toBeGreaterThan(0);

  const restored = new ChatSession(granite, { generation: { maxNewTokens: 2, temperature: 0 } });
  restored.restore(JSON.parse(JSON.stringify(session.toJSON())));
  expect(restored.messages).toEqual(session.messages);
  const resumed = await restored.prompt('Again').reply;
  expect(resumed.stats.reusedTokens).toBe(0);
  expect(() => restored.restore({ format: 'something else' })).toThrow(/not a saved graniteflow conversation/);
  expect(() => restored.restore({ format: 'graniteflow-chat', messages: [{ content: 'x' }] })).toThrow(/message 0 has no "role"/);
  session.dispose();
  restored.dispose();
});

describe('createTextGenerator', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-text-generator-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('a folder as a function: plain text is continued, messages go through the chat template, streaming gives the same', async () => {
    const generate = await createTextGenerator(CHAT_TINY_DIR, { backend: 'wasm', generation: { maxNewTokens: 12 } });
    const plain = await generate('The capital of France is', { temperature: 0 });
    expect(plain).toBe(await greedyText(granite, granite.tokenizer!.encode('The capital of France is'), 12));
    const messages = [{ role: 'user', content: 'Hi' }];
    const chat = await generate(messages, { temperature: 0 });
    expect(chat).toBe(await greedyText(granite, granite.encodePrompt(messages), 12));
    const pieces: string[] = [];
    for await (const piece of generate.stream(messages, { temperature: 0 })) pieces.push(piece);
    expect(pieces.join('')).toBe(chat);
    const session = generate.chat({ generation: { temperature: 0 } });
    expect(await session.prompt('Hi')).toBe(chat);
    session.dispose();
    generate.dispose();
  });

  test("generation_config.json's sampling is the default; a call's own options override it", async () => {
    const folder = path.join(tmp, 'sampling');
    fs.cpSync(CHAT_TINY_DIR, folder, { recursive: true });
    const config = JSON.parse(fs.readFileSync(path.join(folder, 'generation_config.json'), 'utf8'));
    fs.writeFileSync(
      path.join(folder, 'generation_config.json'),
      JSON.stringify({ ...config, do_sample: true, temperature: 1.5, top_k: 50 }),
    );
    const generate = await createTextGenerator(folder, { backend: 'wasm', generation: { maxNewTokens: 24, seed: 7 } });
    const sampled = await generate('Once');
    let expected = '';
    for await (const e of granite.streamText(granite.tokenizer!.encode('Once'), {
      maxNewTokens: 24,
      seed: 7,
      temperature: 1.5,
      topK: 50,
    })) {
      if (e.type === 'done') expected = e.text;
    }
    expect(sampled).toBe(expected);
    const greedy = await generate('Once', { temperature: 0 });
    expect(greedy).toBe(await greedyText(granite, granite.tokenizer!.encode('Once'), 24));
    expect(greedy).not.toBe(sampled);
    generate.dispose();
  });
});
