// The server batching concurrent requests on a real model (golden chat_tiny): each answer equals the
// same request served alone, /metrics tells what happened, and a burst with disconnects loses nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@graniteflow/core/testing';
import { fromPretrained, type GraniteModel, type GraniteMoeHybridConfig } from '@graniteflow/granite';
import { createServer, type GraniteServer, type ServerOptions } from '../src/server/server';
import { GOLDEN } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const PROMPTS = [
  'Hello there',
  'The quick brown fox',
  'Once upon a time, in a land far away, there lived',
  'Why',
  'Tell me about the sea and the ships',
];

/** Servers still open: closed after each test, also when it failed (an open one keeps jest from exiting). */
const open = new Set<GraniteServer>();
afterEach(async () => {
  for (const server of open) await server.close();
  open.clear();
});

async function serve(model: GraniteModel, options: ServerOptions): Promise<{ server: GraniteServer; base: string }> {
  const server = createServer(model, { modelId: 'chat-tiny', ...options });
  open.add(server);
  const { port } = await server.listen(0, '127.0.0.1');
  return { server, base: `http://127.0.0.1:${port}` };
}

async function complete(
  base: string,
  prompt: string,
  maxTokens: number,
  extra: Record<string, unknown> = {},
  signal?: AbortSignal,
): Promise<{ text: string; completion: number }> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ...extra }),
    signal,
  });
  const body = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number }; error?: unknown };
  if (res.status !== 200) throw new Error(`${res.status} ${JSON.stringify(body)}`);
  return { text: body.choices[0].text, completion: body.usage.completion_tokens };
}

/** A response's JSON body, for reading fields in assertions. */
const jsonOf = async (res: Response | Promise<Response>): Promise<any> => (await res).json();

/** Prometheus text → { 'name{labels}': value }. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

describeBackends('serve with continuous batching', (backend) => {
  let granite: GraniteModel;
  let alone: { text: string; completion: number }[];
  beforeAll(async () => {
    granite = await fromPretrained(CHAT_TINY, { backend });
    // Each prompt served alone, one request at a time, nothing saved to resume from.
    const { server, base } = await serve(granite, { parallel: 1, cacheEntries: 0 });
    alone = [];
    for (const [i, p] of PROMPTS.entries()) alone.push(await complete(base, p, 12 + 4 * i));
    await server.close();
    open.delete(server);
  });
  afterAll(() => granite.dispose());

  test('concurrent requests, decoded as one batch, get the answers they get alone; /metrics counts them', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const { server, base } = await serve(granite, { parallel: 4, prefillChunk: 3, cacheEntries: 0 });
    const got = await Promise.all(PROMPTS.map((p, i) => complete(base, p, 12 + 4 * i)));
    expect(got).toEqual(alone);

    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const metrics = parseMetrics(await res.text());
    const generated = alone.reduce((n, a) => n + a.completion, 0);
    expect(metrics.get('graniteflow_requests_total{route="/v1/completions",status="200"}')).toBe(PROMPTS.length);
    expect(metrics.get('graniteflow_generated_tokens_total')).toBe(generated);
    // Batched: fewer decode steps than tokens decoded after the first of each request.
    expect(metrics.get('graniteflow_decode_steps_total')).toBeLessThan(generated - PROMPTS.length);
    // Every token but each request's first (sampled at the end of its prefill) came from a decode step.
    expect(metrics.get('graniteflow_decode_step_tokens_total')).toBe(generated - PROMPTS.length);
    expect(metrics.get('graniteflow_decode_seconds_total')).toBeGreaterThan(0);
    expect(metrics.get('graniteflow_prefill_seconds_total')).toBeGreaterThan(0);
    expect(metrics.get('graniteflow_parallel_sequences')).toBe(4);
    expect(metrics.get('graniteflow_active_sequences')).toBe(0);
    expect(metrics.get('graniteflow_batch_state_bytes')).toBe(0);
    expect(metrics.get('graniteflow_decode_tokens_per_second')).toBeGreaterThan(0);
    expect(metrics.get('graniteflow_state_per_sequence_bytes')).toBeGreaterThan(0);
    await server.close();
    open.delete(server);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  test('a 64-request burst with random disconnects: every answer that is not cancelled is right, nothing leaks', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const { server, base } = await serve(granite, { parallel: 4, maxQueue: 64, prefillChunk: 4, cacheEntries: 4 });
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const outcomes = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const which = i % PROMPTS.length;
        const controller = new AbortController();
        const disconnect = random() < 0.3;
        if (disconnect) setTimeout(() => controller.abort(), Math.floor(random() * 400));
        try {
          const answer = await complete(base, PROMPTS[which], 12 + 4 * which, {}, controller.signal);
          return { which, answer };
        } catch (err) {
          if (disconnect && (err as Error).name === 'AbortError') return { which, answer: null };
          throw err;
        }
      }),
    );
    for (const { which, answer } of outcomes) if (answer !== null) expect(answer).toEqual(alone[which]);
    const answered = outcomes.filter((o) => o.answer !== null).length;
    expect(answered).toBeGreaterThan(32);
    // The server is idle afterwards: no sequence left in the batch, no place left taken.
    for (let i = 0; i < 100 && (await jsonOf(fetch(`${base}/health`))).queue.running > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const health = await jsonOf(fetch(`${base}/health`));
    expect(health.queue).toMatchObject({ running: 0, waiting: 0 });
    expect(health.state).toMatchObject({ reservedBytes: 0, batchBytes: 0 });
    await server.close();
    open.delete(server);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});

describe('serve: admission, tokenize', () => {
  let granite: GraniteModel;
  beforeAll(async () => {
    granite = await fromPretrained(CHAT_TINY, { backend: 'wasm' });
  });
  afterAll(() => granite.dispose());

  test('the state budget sets how many run at once; a full queue answers 503 with Retry-After', async () => {
    // Conv + SSM state of the Mamba layers, keys and values of 256 positions of the attention layer, float32.
    const c = granite.config as GraniteMoeHybridConfig;
    const mamba = c.layer_types.filter((t) => t === 'mamba').length;
    const convDim = c.mamba_n_heads * c.mamba_d_head + 2 * c.mamba_n_groups * c.mamba_d_state;
    const bytes =
      4 *
      (mamba * ((c.mamba_d_conv - 1) * convDim + c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state) +
        (c.num_hidden_layers - mamba) * 2 * 256 * c.num_key_value_heads * (c.hidden_size / c.num_attention_heads));
    const { server, base } = await serve(granite, { contextLength: 256, maxStateBytes: 2 * bytes + 1, maxQueue: 0 });
    const health = await jsonOf(fetch(`${base}/health`));
    expect(health.state.perSequenceBytes).toBe(bytes);
    expect(health.queue.parallel).toBe(2);
    const long = [complete(base, 'Hello', 200), complete(base, 'Hi', 200)];
    await new Promise((r) => setTimeout(r, 50));
    const refused = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', max_tokens: 2 }),
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    await Promise.all(long);
    await server.close();
    open.delete(server);
    expect(() => createServer(granite, { contextLength: 256, maxStateBytes: bytes - 1 })).toThrow(/more than the state budget/);
  });

  test('/tokenize and /detokenize, as llama-server has them', async () => {
    const { server, base } = await serve(granite, {});
    const post = (route: string, body: unknown) =>
      fetch(`${base}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const { tokens } = await jsonOf(post('/tokenize', { content: 'Hello world' }));
    expect(tokens).toEqual(granite.tokenizer!.encode('Hello world'));
    const pieces = await jsonOf(post('/tokenize', { content: 'Hello world', with_pieces: true }));
    expect(pieces.tokens.map((t: { piece: string }) => t.piece).join('')).toBe('Hello world');
    expect(await jsonOf(post('/detokenize', { tokens }))).toEqual({ content: 'Hello world' });
    expect((await post('/detokenize', { tokens: ['a'] })).status).toBe(400);
    expect((await post('/tokenize', { text: 'x' })).status).toBe(400);
    await server.close();
    open.delete(server);
  });

  test('with --snapshot-dir, a conversation pushed out of memory by others resumes from disk; without, it is fed again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-snapshots-'));
    const chat = async (base: string, messages: { role: string; content: string }[]) => {
      const res = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages, max_tokens: 6, temperature: 0 }),
      });
      const body = (await res.json()) as {
        choices: { message: { content: string } }[];
        usage: { prompt_tokens_details: { cached_tokens: number } };
      };
      return { reply: body.choices[0].message.content, cached: body.usage.prompt_tokens_details.cached_tokens };
    };
    const returning = async (options: ServerOptions) => {
      const { server, base } = await serve(granite, { cacheEntries: 1, ...options });
      const a = [{ role: 'user', content: 'Hello' }];
      const first = await chat(base, a);
      await chat(base, [{ role: 'user', content: 'Something else entirely' }]); // takes the one place in memory
      const again = await chat(base, [...a, { role: 'assistant', content: first.reply }, { role: 'user', content: 'Go on' }]);
      const health = await jsonOf(fetch(`${base}/health`));
      await server.close();
      open.delete(server);
      return { again, health };
    };
    const withDisk = await returning({ snapshotDir: dir });
    expect(withDisk.again.cached).toBeGreaterThan(0);
    expect(withDisk.health.cache.spilled).toMatchObject({ written: 3, readBack: 1, failed: 0 });
    // Closing removes the files the server wrote, and only those.
    expect(fs.readdirSync(dir)).toEqual([]);
    const memoryOnly = await returning({});
    expect(memoryOnly.again.cached).toBe(0);
    expect(memoryOnly.again.reply).toBe(withDisk.again.reply);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('one log line per request: key=value text, or a JSON object with --log-format json', async () => {
    for (const logFormat of ['text', 'json'] as const) {
      const lines: string[] = [];
      const { server, base } = await serve(granite, { logFormat, log: (line) => lines.push(line) });
      const { completion } = await complete(base, 'Hello', 4);
      await fetch(`${base}/nowhere`);
      await server.close();
      open.delete(server);
      expect(lines).toHaveLength(2);
      if (logFormat === 'text') {
        expect(lines[0]).toMatch(
          new RegExp(`^POST /v1/completions 200 prompt=\\d+ cached=0 prefill=\\d+ completion=${completion} finish=length \\d+\\.\\d\\ds$`),
        );
        expect(lines[1]).toMatch(/^GET \/nowhere 404 not_found: No route/);
      } else {
        const [done, missing] = lines.map((l) => JSON.parse(l));
        expect(done).toMatchObject({ method: 'POST', path: '/v1/completions', status: 200, cached: 0, completion, finish: 'length' });
        expect(done.prompt).toBe(done.prefill);
        expect(missing).toMatchObject({ status: 404, error: expect.stringMatching(/^not_found: No route/) });
      }
    }
  });
});
