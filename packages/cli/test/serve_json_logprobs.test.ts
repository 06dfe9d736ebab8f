// JSON mode (response_format, enforced by constrained decoding) and logprobs on the server, with the
// golden chat_tiny model through the openai client: the random weights write no JSON on their own.
import * as path from 'node:path';
import OpenAI from 'openai';
import { fromPretrained, type GraniteModel } from '@graniteflow/granite';
import { createServer, type GraniteServer } from '../src/server/server';
import { GOLDEN } from './helpers/cli';

let granite: GraniteModel;
let server: GraniteServer;
let client: OpenAI;
beforeAll(async () => {
  granite = await fromPretrained(path.join(GOLDEN, 'chat_tiny'), { backend: 'wasm' });
  server = createServer(granite, { modelId: 'chat-tiny', cacheEntries: 0 });
  const { port } = await server.listen(0, '127.0.0.1');
  client = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 60_000 });
});
afterAll(async () => {
  await server?.close();
  granite?.dispose();
});

const messages = [{ role: 'user' as const, content: 'Describe a person.' }];
const schema = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 8 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 3 } },
  required: ['name', 'tags'],
  additionalProperties: false,
};

test('response_format json_schema: every sampled reply parses and fits the schema; json_object gives an object', async () => {
  const free = await client.chat.completions.create({ model: 'chat-tiny', messages, max_tokens: 60, temperature: 0 });
  expect(() => JSON.parse(free.choices[0].message.content!)).toThrow();
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: 'chat-tiny',
      messages,
      max_tokens: 300,
      temperature: 1,
      seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema } },
    });
    const value = JSON.parse(r.choices[0].message.content!) as { name: string; tags: string[] };
    expect(Object.keys(value).sort()).toEqual(['name', 'tags']);
    expect(value.name.length).toBeLessThanOrEqual(8);
    expect(value.tags.length).toBeLessThanOrEqual(3);
    expect(value.tags.every((t) => t === 'a' || t === 'b')).toBe(true);
    expect(r.choices[0].finish_reason).toBe('stop');
  }
  const object = await client.chat.completions.create({
    model: 'chat-tiny',
    messages,
    max_tokens: 300,
    temperature: 1,
    seed: 4,
    response_format: { type: 'json_object' },
  });
  const parsed = JSON.parse(object.choices[0].message.content!);
  expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
});

test('what JSON mode cannot enforce is refused with a 400 naming it, not ignored', async () => {
  const refused = (format: unknown) =>
    client.chat.completions.create({ model: 'chat-tiny', messages, max_tokens: 5, response_format: format as never }).then(
      () => null,
      (err: InstanceType<typeof OpenAI.APIError>) => ({
        status: err.status,
        param: (err.error as { param?: string })?.param,
        message: err.message,
      }),
    );
  expect(await refused({ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a+$' } } })).toMatchObject({
    status: 400,
    param: 'response_format',
    message: expect.stringMatching(/pattern/),
  });
  expect(await refused({ type: 'xml' })).toMatchObject({ status: 400, param: 'response_format.type' });
});

test('chat logprobs: one entry per generated token, the tokens spell the reply, alternatives sorted; streamed the same', async () => {
  const r = await client.chat.completions.create({
    model: 'chat-tiny',
    messages,
    max_tokens: 12,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = r.choices[0].logprobs!.content!;
  expect(content).toHaveLength(r.usage!.completion_tokens);
  expect(content.map((c) => c.token).join('')).toBe(r.choices[0].message.content);
  for (const c of content) {
    expect(c.top_logprobs).toHaveLength(3);
    // Greedy: the chosen token is the most likely one.
    expect(c.top_logprobs[0]).toEqual({ token: c.token, logprob: c.logprob, bytes: c.bytes });
    expect(c.top_logprobs[1].logprob).toBeLessThanOrEqual(c.top_logprobs[0].logprob);
    expect(c.logprob).toBeLessThanOrEqual(0);
  }
  const stream = await client.chat.completions.create({
    model: 'chat-tiny',
    messages,
    max_tokens: 12,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
    stream: true,
  });
  const streamed: typeof content = [];
  for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  expect(streamed).toEqual(content);
  const plain = await client.chat.completions.create({ model: 'chat-tiny', messages, max_tokens: 4, temperature: 0 });
  expect(plain.choices[0].logprobs).toBeNull();
});

test('completions logprobs (legacy shape): tokens, token_logprobs, top_logprobs, text_offset', async () => {
  const r = await client.completions.create({ model: 'chat-tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 2 });
  const lp = r.choices[0].logprobs!;
  expect(lp.tokens!.join('')).toBe(r.choices[0].text);
  expect(lp.token_logprobs).toHaveLength(lp.tokens!.length);
  expect(lp.top_logprobs!.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 2)).toBe(true);
  expect(lp.text_offset![0]).toBe(0);
  expect(lp.text_offset![1]).toBe(lp.tokens![0].length);
});

test('n > 1: the choices are generated side by side; choice i equals the request alone with seed + i; streamed by index', async () => {
  const sampled = { model: 'chat-tiny', messages, max_tokens: 10, temperature: 1, seed: 40 };
  const r = await client.chat.completions.create({ ...sampled, n: 3 });
  expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  const alone = await Promise.all([40, 41, 42].map((seed) => client.chat.completions.create({ ...sampled, seed })));
  expect(r.choices.map((c) => c.message.content)).toEqual(alone.map((a) => a.choices[0].message.content));
  expect(r.usage!.completion_tokens).toBe(alone.reduce((n, a) => n + a.usage!.completion_tokens, 0));
  expect(new Set(r.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);

  const stream = await client.chat.completions.create({ ...sampled, n: 3, stream: true });
  const texts = ['', '', ''];
  for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.delta.content ?? '';
  expect(texts).toEqual(r.choices.map((c) => c.message.content));

  const completions = await client.completions.create({ model: 'chat-tiny', prompt: 'Once', max_tokens: 6, temperature: 0, n: 2 });
  expect(completions.choices[0].text).toBe(completions.choices[1].text);
  const tooMany = await client.chat.completions.create({ ...sampled, n: 9 }).catch((err: InstanceType<typeof OpenAI.APIError>) => err);
  expect(tooMany).toMatchObject({ status: 400 });
});
