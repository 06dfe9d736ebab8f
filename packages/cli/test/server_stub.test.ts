// The server's protocol logic against a scripted engine: tool calls, queueing, cancellation, errors.
import * as net from 'node:net';
import OpenAI from 'openai';
import { ChatTemplateError } from '@graniteflow/granite';
import { createServer, type GraniteServer } from '../src/server/server';
import { gate, StubCache, StubEngine, type StubOptions } from './helpers/stub_engine';

const TOOLS = [
  {
    type: 'function' as const,
    function: {
      name: 'get_weather',
      description: 'Weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
    },
  },
];
const TOOL_REPLY =
  'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>';

let server: GraniteServer;
let engine: StubEngine;
let base: string;
let client: OpenAI;

async function start(stub: StubOptions = {}, options: Parameters<typeof createServer>[1] = {}) {
  engine = new StubEngine(stub);
  server = createServer(engine, options);
  const { port } = await server.listen(0, '127.0.0.1');
  base = `http://127.0.0.1:${port}`;
  client = new OpenAI({ apiKey: 'unused', baseURL: `${base}/v1`, maxRetries: 0, timeout: 20_000 });
}

afterEach(async () => {
  await server.close();
  expect(StubCache.live).toBe(0); // every saved or working state was freed
});

const JSON_HEADERS = { 'Content-Type': 'application/json' };
const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body });

describe('tool calls', () => {
  test('non-streamed: <tool_call> blocks become tool_calls with JSON-string arguments', async () => {
    await start({ reply: () => TOOL_REPLY });
    const r = await client.chat.completions.create({
      model: 'stub-model',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: TOOLS,
    });
    const choice = r.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBe('Let me check.');
    expect(choice.message.tool_calls).toHaveLength(2);
    const calls = choice.message.tool_calls!.map((c) => (c.type === 'function' ? c : null)!);
    expect(calls.map((c) => c.function.name)).toEqual(['get_weather', 'get_weather']);
    expect(calls.map((c) => JSON.parse(c.function.arguments))).toEqual([{ city: 'Paris' }, { city: 'Rome' }]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    expect(calls[0].id).toMatch(/^call-/);
  });

  test('the tools reach the chat template', async () => {
    await start();
    await client.chat.completions.create({ model: 'stub-model', messages: [{ role: 'user', content: 'x' }], tools: TOOLS });
    expect(engine.decode(engine.calls[0].promptIds)).toContain('"name":"get_weather"');
  });

  test('streamed: tool calls arrive as tool_calls deltas with indices, text as content deltas', async () => {
    await start({ reply: () => TOOL_REPLY });
    const stream = await client.chat.completions.create({
      model: 'stub-model',
      messages: [{ role: 'user', content: 'Weather?' }],
      tools: TOOLS,
      stream: true,
    });
    let content = '';
    const calls: { index: number; name?: string; arguments?: string; id?: string }[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.delta.content) content += c.delta.content;
      for (const t of c.delta.tool_calls ?? [])
        calls.push({ index: t.index, name: t.function?.name, arguments: t.function?.arguments, id: t.id });
      if (c.finish_reason) finish = c.finish_reason;
    }
    expect(finish).toBe('tool_calls');
    expect(content.trim()).toBe('Let me check.');
    expect(calls.map((c) => c.index)).toEqual([0, 1]);
    expect(calls.map((c) => JSON.parse(c.arguments!))).toEqual([{ city: 'Paris' }, { city: 'Rome' }]);
  });

  test('a malformed block is kept as text, and without tools in the request nothing is parsed', async () => {
    await start({ reply: () => 'A <tool_call>{not json}</tool_call> B' });
    const withTools = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools: TOOLS });
    expect(withTools.choices[0].message.tool_calls).toBeUndefined();
    expect(withTools.choices[0].message.content).toBe('A <tool_call>{not json}</tool_call> B');
    expect(withTools.choices[0].finish_reason).toBe('length');
    const withoutTools = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'y' }] });
    expect(withoutTools.choices[0].message.content).toBe('A <tool_call>{not json}</tool_call> B');
  });

  test('assistant tool_calls and tool results in the history are accepted', async () => {
    await start();
    const r = await client.chat.completions.create({
      model: 'm',
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call-1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
        },
        { role: 'tool', tool_call_id: 'call-1', content: '{"temp": 21}' },
      ],
      tools: TOOLS,
    });
    expect(r.choices[0].message.content).toBe('ok');
    expect(engine.decode(engine.calls[0].promptIds)).toContain('"arguments":{"city":"Paris"}');
  });
});

describe('queue', () => {
  test('requests run one at a time, in order; the rest wait', async () => {
    const hold = gate();
    let running = 0;
    let maxRunning = 0;
    await start({
      reply: (p) => `re:${p.slice(-12, -11)}`,
      beforeToken: async (i) => {
        if (i === 0) {
          running++;
          maxRunning = Math.max(maxRunning, running);
          await hold.promise;
        }
        if (i === 3) running--;
      },
    });
    const requests = ['a', 'b', 'c'].map((x) =>
      client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: x }], max_tokens: 4 }),
    );
    await waitFor(async () => (await health()).queue.waiting === 2);
    hold.open();
    const replies = await Promise.all(requests);
    expect(replies.map((r) => r.choices[0].message.content)).toEqual(['re:a', 're:b', 're:c']);
    expect(maxRunning).toBe(1);
    expect((await health()).queue.maxWaitingSeen).toBe(2);
  });

  test('a full queue answers 503 with an OpenAI error; the queued requests still complete', async () => {
    const hold = gate();
    await start({ beforeToken: () => hold.promise }, { maxQueue: 1 });
    const first = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: '1' }] });
    const second = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: '2' }] });
    await waitFor(async () => (await health()).queue.waiting === 1);
    const third = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: '3' }] }));
    expect(third.status).toBe(503);
    const body = (await third.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'server_error', code: 'queue_full' });
    await expect(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: '4' }] })).rejects.toMatchObject({
      status: 503,
    });
    hold.open();
    expect((await first).choices[0].message.content).toBe('ok');
    expect((await second).choices[0].message.content).toBe('ok');
    expect(server.stats.rejected).toBe(2);
  });
});

describe('queue places are taken before tokenizing', () => {
  test('a burst beyond the queue gets 503 without being tokenized', async () => {
    const hold = gate();
    await start({ beforeToken: () => hold.promise }, { maxQueue: 1 });
    const first = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'first' }] });
    const second = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'second' }] });
    try {
      await waitFor(async () => engine.calls.length === 1 && (await health()).queue.waiting === 1);
      const burst = await Promise.all(
        ['x1', 'x2', 'x3'].map((x) => post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: x }] }))),
      );
      expect(burst.map((r) => r.status)).toEqual([503, 503, 503]);
      expect(engine.encoded.filter((text) => /x[123]/.test(text))).toEqual([]);
    } finally {
      hold.open();
    }
    expect((await first).choices[0].message.content).toBe('ok');
    expect((await second).choices[0].message.content).toBe('ok');
  });

  test('a waiting request refused after tokenizing gives its place back without starting anything', async () => {
    const hold = gate();
    await start({ beforeToken: () => hold.promise, contextLength: 100 }, { maxQueue: 1 });
    const first = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'first' }] });
    let next;
    try {
      await waitFor(() => engine.calls.length === 1);
      // 90 characters: under the byte bound (4 per token), so it is tokenized, then refused.
      const tooLong = await post('/v1/completions', JSON.stringify({ prompt: 'y'.repeat(90), max_tokens: 20 }));
      expect(tooLong.status).toBe(400);
      expect(engine.encoded).toContain('y'.repeat(90));
      expect((await health()).queue).toMatchObject({ running: 1, waiting: 0 });
      expect(engine.calls).toHaveLength(1); // the refused request did not start a second generation
      next = client.completions.create({ model: 'm', prompt: 'next' });
      await waitFor(async () => (await health()).queue.waiting === 1);
    } finally {
      hold.open();
    }
    expect((await first).choices[0].message.content).toBe('ok');
    expect((await next).choices[0].text).toBe('ok');
  });

  test('a prompt too long for the context whatever its tokens is refused before the tokenizer sees it', async () => {
    await start({ contextLength: 50 });
    const res = await post('/v1/completions', JSON.stringify({ prompt: 'z'.repeat(50 * 4 + 1) }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; param: string; message: string } };
    expect(body.error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
    expect(body.error.message).toContain('context length is 50 tokens');
    expect(engine.encoded).toEqual([]);
  });
});

describe('chat template failures', () => {
  test("are 400s carrying the template's complaint, without server paths or command-line advice", async () => {
    await start();
    engine.renderChat = () => {
      throw new ChatTemplateError(
        'Rendering the chat template from /srv/models/x/tokenizer_config.json → chat_template failed: Conversation roles must alternate',
        {
          cause: new Error('Conversation roles must alternate'),
        },
      );
    };
    const res = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'a' }] }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string; type: string; param: string } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages' });
    expect(body.error.message).toContain('Conversation roles must alternate');
    expect(body.error.message).not.toMatch(/\/srv|--chat|checkpoint/);
  });
});

describe('cancellation', () => {
  test('a client that disconnects mid-stream cancels its generation; the next request runs', async () => {
    let tokens = 0;
    await start({
      reply: () => 'x'.repeat(1000),
      beforeToken: async () => {
        tokens++;
        await new Promise((r) => setTimeout(r, 2));
      },
    });
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'm', messages: [{ role: 'user', content: 'long' }], stream: true, max_tokens: 1000 },
      { signal: controller.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 5) controller.abort();
    } catch {
      // the client library may end the iteration quietly or throw; either way the client left
    }
    expect(chunks).toBeGreaterThanOrEqual(5);
    await waitFor(async () => server.stats.cancelled === 1);
    expect(engine.calls[0].aborted).toBe(true);
    const seen = tokens;
    expect(seen).toBeLessThan(1000);
    await new Promise((r) => setTimeout(r, 50));
    expect(tokens).toBe(seen); // nothing more was generated
    const next = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'short' }], max_tokens: 2 });
    expect(next.choices[0].message.content).toBe('xx');
  });

  test('a non-streamed request whose client goes away is cancelled, running or waiting', async () => {
    const hold = gate();
    await start({
      reply: (p) => (p.includes('first') ? 'done' : 'y'.repeat(1000)),
      beforeToken: (i) => (i === 0 ? hold.promise : new Promise((r) => setTimeout(r, 2))),
    });
    const first = client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'first' }] });
    await waitFor(() => engine.calls.length === 1);
    const waiting = new AbortController();
    const queued = fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ messages: [{ role: 'user', content: 'queued' }] }),
      signal: waiting.signal,
    });
    await waitFor(async () => (await health()).queue.waiting === 1);
    waiting.abort();
    await expect(queued).rejects.toThrow();
    await waitFor(async () => (await health()).queue.waiting === 0);
    hold.open();
    expect((await first).choices[0].message.content).toBe('done');
    expect(engine.calls).toHaveLength(1); // the queued request never ran

    const running = new AbortController();
    const long = fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ messages: [{ role: 'user', content: 'long' }], max_tokens: 1000 }),
      signal: running.signal,
    });
    await waitFor(() => engine.calls.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    running.abort();
    await expect(long).rejects.toThrow();
    await waitFor(() => engine.calls[1].aborted);
    await waitFor(() => server.stats.cancelled === 2);
  });
});

describe('errors', () => {
  beforeEach(() => start());

  async function expectError(res: Response, status: number, param?: string) {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
    expect(typeof body.error.message).toBe('string');
    expect(body.error.message.length).toBeGreaterThan(10);
    expect(typeof body.error.type).toBe('string');
    if (param !== undefined) expect(body.error.param).toBe(param);
  }

  test('malformed JSON, empty body and a non-object body get 400', async () => {
    await expectError(await post('/v1/chat/completions', '{"messages": ['), 400);
    await expectError(await post('/v1/chat/completions', ''), 400);
    await expectError(await post('/v1/chat/completions', '[1,2]'), 400);
    await expectError(await post('/v1/completions', '"text"'), 400);
  });

  test.each([
    [{ messages: [] }, 'messages'],
    [{ messages: 'hi' }, 'messages'],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type'],
    [{ messages: [{ role: 'user', content: 'x' }], temperature: 3 }, 'temperature'],
    [{ messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }, 'temperature'],
    [{ messages: [{ role: 'user', content: 'x' }], top_p: 0 }, 'top_p'],
    [{ messages: [{ role: 'user', content: 'x' }], max_tokens: 0 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'x' }], max_tokens: 1.5 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'x' }], max_tokens: 10 ** 9 }, 'max_tokens'],
    [{ messages: [{ role: 'user', content: 'x' }], seed: 0.5 }, 'seed'],
    [{ messages: [{ role: 'user', content: 'x' }], stop: 7 }, 'stop'],
    [{ messages: [{ role: 'user', content: 'x' }], stop: ['ok', ''] }, 'stop'],
    [{ messages: [{ role: 'user', content: 'x' }], n: 2 }, 'n'],
    [{ messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 'stream'],
    [{ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, 'tools[0]'],
    [{ messages: [{ role: 'user', content: 'x' }], tool_choice: 'required' }, 'tool_choice'],
    [
      { messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'f', arguments: '{bad' } }] }] },
      'messages[0].tool_calls[0].function.arguments',
    ],
  ])('chat %j → 400 naming %s', async (body, param) => {
    await expectError(await post('/v1/chat/completions', JSON.stringify(body)), 400, param);
    expect(engine.calls).toHaveLength(0);
  });

  test.each([
    [{}, 'prompt'],
    [{ prompt: '' }, 'prompt'],
    [{ prompt: ['a', 'b'] }, 'prompt'],
    [{ prompt: 'x', echo: true }, 'echo'],
    [{ prompt: 'x', max_tokens: -1 }, 'max_tokens'],
  ])('completions %j → 400 naming %s', async (body, param) => {
    await expectError(await post('/v1/completions', JSON.stringify(body)), 400, param);
  });

  test('a prompt longer than the context gets 400 context_length_exceeded', async () => {
    await server.close();
    await start({ contextLength: 50 });
    const res = await post('/v1/completions', JSON.stringify({ prompt: 'z'.repeat(60) }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('context_length_exceeded');
  });

  test('an oversized body gets 413', async () => {
    await server.close();
    await start({}, { maxBodyBytes: 1024 });
    await expectError(await post('/v1/completions', JSON.stringify({ prompt: 'x'.repeat(4096) })), 413);
    expect((await client.completions.create({ model: 'm', prompt: 'small' })).choices[0].text).toBe('ok');
  });

  test('unknown routes 404, wrong methods 405, broken HTTP 400 — and the server keeps serving', async () => {
    await expectError(await fetch(`${base}/v2/nothing`), 404);
    await expectError(await fetch(`${base}/v1/chat/completions`), 405);
    await expectError(await post('/health', '{}'), 405);
    const raw = await new Promise<string>((resolve) => {
      const socket = net.connect(Number(new URL(base).port), '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
      let data = '';
      socket.on('data', (d) => (data += d.toString()));
      socket.on('close', () => resolve(data));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    const ok = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'still there?' }] });
    expect(ok.choices[0].message.content).toBe('ok');
  });
});

describe('resume and endpoints', () => {
  test('a request extending an earlier conversation feeds only the new tokens', async () => {
    await start({ reply: () => 'fine, thanks' });
    const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'hello there' }];
    const first = await client.chat.completions.create({ model: 'm', messages: history });
    expect(first.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    history.push({ role: 'assistant', content: first.choices[0].message.content }, { role: 'user', content: 'and you?' });
    const second = await client.chat.completions.create({ model: 'm', messages: history });
    const prompt2 = engine.renderChat(history as never, {});
    // Everything the first request left in its state is reused: its prompt and its reply but the last token.
    expect(second.usage!.prompt_tokens).toBe([...prompt2].length);
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens + first.usage!.completion_tokens - 1);
    expect(engine.decode(engine.calls[1].promptIds)).toBe('s<user>and you?<assistant>');
    expect(server.stats.prefillTokens).toBe(first.usage!.prompt_tokens + [...'s<user>and you?<assistant>'].length);
    // A different conversation starts from scratch.
    const other = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'unrelated' }] });
    expect(other.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  });

  test('the saved states are bounded (LRU)', async () => {
    await start({}, { cacheEntries: 2 });
    for (const x of ['a', 'b', 'c', 'd']) await client.completions.create({ model: 'm', prompt: `prompt ${x}`, max_tokens: 2 });
    expect((await health()).cache.entries).toBe(2);
  });

  test('completions (plain and streamed), stop and sampling parameters reach the engine', async () => {
    await start({ reply: () => 'abc' });
    const r = await client.completions.create({
      model: 'm',
      prompt: 'Hi',
      max_tokens: 5,
      temperature: 0.5,
      top_p: 0.9,
      seed: 7,
      stop: ['\n'],
    });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe('abc');
    expect(r.choices[0].finish_reason).toBe('length');
    expect(engine.calls[0].options).toMatchObject({ maxNewTokens: 5, temperature: 0.5, topP: 0.9, seed: 7, stopStrings: ['\n'] });
    const stream = await client.completions.create({
      model: 'm',
      prompt: [72, 105],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.Completions.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('ab');
    expect(usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 2 });
  });

  test('/v1/models and /health', async () => {
    await start();
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['stub-model']);
    expect((await client.models.retrieve('stub-model')).id).toBe('stub-model');
    expect((await fetch(`${base}/v1/models/other`)).status).toBe(404);
    const h = await health();
    expect(h).toMatchObject({ status: 'ok', model: 'stub-model', queue: { running: 0, waiting: 0 } });
  });
});

async function health(): Promise<{
  queue: { waiting: number; maxWaitingSeen: number; running: number };
  cache: { entries: number };
  [k: string]: unknown;
}> {
  return (await (await fetch(`${base}/health`)).json()) as never;
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 10));
  }
}
