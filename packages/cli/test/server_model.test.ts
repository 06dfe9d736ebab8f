// The server on a real model (the golden chat_tiny checkpoint), driven by the openai client.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import OpenAI from 'openai';
import { fromPretrained, type GraniteModel } from '@graniteflow/granite';
import { createServer, type GraniteServer } from '../src/server/server';
import { GOLDEN } from './helpers/cli';

interface TextCase {
  kind: 'plain' | 'chat';
  prompt: string;
  messages?: { role: 'user'; content: string }[];
  text: string;
  new_ids: number[];
}
const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const expectations = JSON.parse(fs.readFileSync(path.join(CHAT_TINY, 'text_expectations.json'), 'utf8')) as {
  max_new_tokens: number;
  cases: TextCase[];
};
const chatCases = expectations.cases.filter((c) => c.kind === 'chat');
const plainCases = expectations.cases.filter((c) => c.kind === 'plain');

let granite: GraniteModel;
let server: GraniteServer;
let client: OpenAI;
let base: string;
let tensorsBefore: number;

beforeAll(async () => {
  granite = await fromPretrained(CHAT_TINY, { backend: 'wasm' });
  tensorsBefore = tf.memory().numTensors;
  server = createServer(granite, { modelId: 'chat-tiny' });
  const { port } = await server.listen(0, '127.0.0.1');
  base = `http://127.0.0.1:${port}`;
  client = new OpenAI({ apiKey: 'unused', baseURL: `${base}/v1`, maxRetries: 0, timeout: 60_000 });
});

afterAll(async () => {
  await server?.close();
  // Saved states and every request's tensors are freed once the server is closed.
  expect(tf.memory().numTensors).toBe(tensorsBefore);
  granite?.dispose();
});

const greedy = { temperature: 0, max_tokens: expectations.max_new_tokens };

test.each(chatCases.map((c) => [c.messages![0].content, c] as const))('chat %j, not streamed: the golden greedy text', async (_, c) => {
  const r = await client.chat.completions.create({ model: 'chat-tiny', messages: c.messages!, ...greedy });
  expect(r.choices[0].message.content).toBe(c.text);
  expect(r.choices[0].finish_reason).toBe(c.new_ids.length < expectations.max_new_tokens ? 'stop' : 'length');
  expect(r.usage!.completion_tokens).toBe(c.new_ids.length);
  expect(r.model).toBe('chat-tiny');
});

test('chat, streamed: the deltas add up to the golden text', async () => {
  const c = chatCases[1];
  const stream = await client.chat.completions.create({
    model: 'chat-tiny',
    messages: c.messages!,
    ...greedy,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let deltas = 0;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (choice.delta.content) {
      text += choice.delta.content;
      deltas++;
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  expect(text).toBe(c.text);
  expect(deltas).toBeGreaterThan(1);
  expect(finish).toBe('length');
  expect(usage?.completion_tokens).toBe(c.new_ids.length);
});

test.each(plainCases.map((c) => [c.prompt, c] as const))('completions %j: the golden greedy text', async (_, c) => {
  const r = await client.completions.create({ model: 'chat-tiny', prompt: c.prompt, ...greedy });
  expect(r.choices[0].text).toBe(c.text);
});

test('a second request extending the first conversation prefills only the new tokens', async () => {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me about the license of this software.' }];
  const first = await client.chat.completions.create({ model: 'chat-tiny', messages, temperature: 0, max_tokens: 6 });
  expect(first.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  messages.push({ role: 'assistant', content: first.choices[0].message.content }, { role: 'user', content: 'And what about patents?' });
  const prefillBefore = server.stats.prefillTokens;
  const second = await client.chat.completions.create({ model: 'chat-tiny', messages, temperature: 0, max_tokens: 6 });
  const held = first.usage!.prompt_tokens + first.usage!.completion_tokens - 1; // prompt + reply but its last token
  const cached = second.usage!.prompt_tokens_details!.cached_tokens!;
  expect(cached).toBe(held);
  const fed = server.stats.prefillTokens - prefillBefore;
  expect(fed).toBe(second.usage!.prompt_tokens - cached);
  // Only the tail is fed: the end of the reply, the user turn and the assistant header.
  const newTurn = granite.tokenizer!.encode(
    '<|end_of_text|>\n<|start_of_role|>user<|end_of_role|>And what about patents?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>',
  );
  expect(fed).toBeLessThanOrEqual(newTurn.length + 1);
  expect(fed).toBeLessThan(second.usage!.prompt_tokens / 3);
});

test('resuming gives the same tokens as feeding the whole prompt again', async () => {
  // Token-id prompts, the second extending the first by its generated ids, so that both servers
  // see exactly the same ids and the resumed one continues from the first request's state.
  const prompt1 = granite.tokenizer!.encode('The license grants you the right to');
  const generated: number[] = [];
  for await (const id of granite.generate(prompt1, { maxNewTokens: 5 })) generated.push(id);
  const first = await client.completions.create({ model: 'chat-tiny', prompt: prompt1, temperature: 0, max_tokens: 5 });
  expect(first.choices[0].text).toBe(granite.tokenizer!.decode(generated, { skipSpecialTokens: true }));
  const prompt2 = [...prompt1, ...generated, ...granite.tokenizer!.encode(' copy and modify')];
  const resumed = await client.completions.create({ model: 'chat-tiny', prompt: prompt2, temperature: 0, max_tokens: 6 });
  expect(resumed.usage!.prompt_tokens_details!.cached_tokens).toBe(prompt1.length + generated.length - 1);
  const fresh = createServer(granite, { modelId: 'fresh', cacheEntries: 0 });
  try {
    const { port } = await fresh.listen(0, '127.0.0.1');
    const freshClient = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
    const full = await freshClient.completions.create({ model: 'fresh', prompt: prompt2, temperature: 0, max_tokens: 6 });
    expect(full.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    expect(resumed.choices[0].text).toBe(full.choices[0].text);
  } finally {
    await fresh.close();
  }
});

test('a long prompt, fed to the model in pieces, continues exactly as when fed whole', async () => {
  const prompt = granite.tokenizer!.encode('The license grants you the right to copy, modify and share it. '.repeat(60));
  expect(prompt.length).toBeGreaterThan(600); // more than two of the server's prefill pieces
  const whole: number[] = [];
  for await (const id of granite.generate(prompt, { maxNewTokens: 8 })) whole.push(id);
  const r = await client.completions.create({ model: 'chat-tiny', prompt, temperature: 0, max_tokens: 8 });
  expect(r.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  expect(r.choices[0].text).toBe(granite.tokenizer!.decode(whole, { skipSpecialTokens: true }));
});

test('a seed makes sampling reproducible', async () => {
  const ask = (seed: number) =>
    client.chat.completions.create({
      model: 'chat-tiny',
      messages: [{ role: 'user', content: 'Write a poem.' }],
      temperature: 1,
      top_p: 0.95,
      seed,
      max_tokens: 10,
    });
  const [a, b] = [await ask(42), await ask(42)];
  expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
});

test('stop strings end the text before them', async () => {
  const c = plainCases[0]; // " codeosopyrightAMAG PARTI workove FITNESS"
  const r = await client.completions.create({ model: 'chat-tiny', prompt: c.prompt, ...greedy, stop: ['AMAG'] });
  expect(r.choices[0].text).toBe(c.text.slice(0, c.text.indexOf('AMAG')));
  expect(r.choices[0].finish_reason).toBe('stop');
});

test('/v1/models and /health', async () => {
  expect((await client.models.list()).data.map((m) => m.id)).toEqual(['chat-tiny']);
  const health = (await (await fetch(`${base}/health`)).json()) as { status: string; stats: { requests: number } };
  expect(health.status).toBe('ok');
  expect(health.stats.requests).toBeGreaterThan(5);
});
