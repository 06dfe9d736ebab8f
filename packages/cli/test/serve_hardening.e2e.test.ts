// `graniteflow serve` as a process, against what web pages and oversized requests can do to a
// local server: DNS rebinding, cross-origin posts, missing keys, huge or deeply nested prompts.
import * as path from 'node:path';
import OpenAI from 'openai';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';
import { errorOf, request, slowestHealth, startServe, type ServeProcess } from './helpers/serve_process';

// The golden checkpoint: the token counts below assume its tokenizer, and the tools test its
// Granite chat template (the embedded demo model's plain template renders no tools).
const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const JSON_TYPE = { 'Content-Type': 'application/json' };
const chat = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ messages: [{ role: 'user', content }], max_tokens: 1, ...extra });
const WORDS = 'the quick brown fox jumps over the lazy dog 12345 ';

describe('default options: no key, no CORS, local host names only', () => {
  let serve: ServeProcess;
  beforeAll(async () => {
    serve = await startServe(['--model', CHAT_TINY, '--context-length', '4096']);
  });
  afterAll(() => serve?.stop());

  const health = async () => (await request(serve.port, { path: '/health' })).json as { stats: { requests: number } };

  test('a text/plain POST, which a web page may send without a preflight, gets 415 and runs nothing', async () => {
    const before = (await health()).stats.requests;
    const res = await request(serve.port, {
      method: 'POST',
      path: '/v1/completions',
      headers: { 'Content-Type': 'text/plain' },
      body: '{"prompt": "hi", "max_tokens": 1}',
    });
    expect(res.status).toBe(415);
    expect(errorOf(res)).toMatchObject({ type: 'invalid_request_error', code: 'unsupported_media_type' });
    expect(errorOf(res).message).toContain('Content-Type: application/json');
    const form = await request(serve.port, { method: 'POST', path: '/v1/completions', body: '{"prompt": "hi"}' });
    expect(form.status).toBe(415);
    expect((await health()).stats.requests).toBe(before);
  });

  test('a request from another site (Origin header) gets 403 and no CORS headers; so does its preflight', async () => {
    const origin = 'http://evil.example';
    const post = await request(serve.port, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { ...JSON_TYPE, Origin: origin },
      body: chat('hi'),
    });
    expect(post.status).toBe(403);
    expect(errorOf(post).code).toBe('origin_not_allowed');
    expect(errorOf(post).message).toContain(origin);
    expect(post.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await request(serve.port, {
      method: 'OPTIONS',
      path: '/v1/chat/completions',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    // Without an Origin, as curl and SDKs send it, the same request is served.
    expect((await request(serve.port, { method: 'POST', path: '/v1/chat/completions', headers: JSON_TYPE, body: chat('hi') })).status).toBe(
      200,
    );
  });

  test('a Host header naming another host (DNS rebinding) gets 403; localhost, 127.0.0.1 and [::1] are served', async () => {
    const rebound = await request(serve.port, { path: '/v1/models', headers: { Host: `attacker.example:${serve.port}` } });
    expect(rebound.status).toBe(403);
    expect(errorOf(rebound).code).toBe('host_not_allowed');
    expect(errorOf(rebound).message).toContain(`attacker.example:${serve.port}`);
    for (const host of [`localhost:${serve.port}`, `127.0.0.1:${serve.port}`, `[::1]:${serve.port}`, `LOCALHOST:${serve.port}`]) {
      const res = await request(serve.port, { path: '/v1/models', headers: { Host: host } });
      expect([host, res.status]).toEqual([host, 200]);
    }
  });

  test('a malformed percent-encoding in /v1/models/ID gets 400 naming the path, not 500', async () => {
    const res = await request(serve.port, { path: '/v1/models/%E0%A4%A' });
    expect(res.status).toBe(400);
    expect(errorOf(res)).toMatchObject({ type: 'invalid_request_error', param: 'model' });
    expect(errorOf(res).message).toContain('%E0%A4%A');
  });

  test('tools nested 5000 levels deep get 400 naming the nesting limit, not a 500 from the template; 20 levels are fine', async () => {
    const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    const withTools = (depth: number) =>
      `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1,"tools":[{"type":"function","function":{"name":"f","parameters":${nested(depth)}}}]}`;
    const deep = await request(serve.port, { method: 'POST', path: '/v1/chat/completions', headers: JSON_TYPE, body: withTools(5000) });
    expect(deep.status).toBe(400);
    expect(errorOf(deep).type).toBe('invalid_request_error');
    expect(errorOf(deep).message).toMatch(/nests .* more than 64 levels/);
    expect(errorOf(deep).message).not.toMatch(/stack|--chat|tokenizer_config/);
    const shallow = await request(serve.port, { method: 'POST', path: '/v1/chat/completions', headers: JSON_TYPE, body: withTools(20) });
    expect(shallow.status).toBe(200);
  });

  test('an invalid token id gets 400 with the API-relevant message only, no command-line advice', async () => {
    const res = await request(serve.port, {
      method: 'POST',
      path: '/v1/completions',
      headers: JSON_TYPE,
      body: JSON.stringify({ prompt: [999999], max_tokens: 1 }),
    });
    expect(res.status).toBe(400);
    expect(errorOf(res).param).toBe('prompt');
    expect(errorOf(res).message).toContain('999999');
    expect(errorOf(res).message).not.toMatch(/download|re-copy|graniteflow|--/);
  });

  test('over-long prompts get 400 naming the context length at once, and three at a time do not hold up /health', async () => {
    const huge = WORDS.repeat(120_000); // 6 MB: far beyond 4096 tokens
    const started = performance.now();
    const replies = Promise.all(
      [1, 2, 3].map(async (i) => {
        const res = await request(serve.port, {
          method: 'POST',
          path: '/v1/chat/completions',
          headers: JSON_TYPE,
          body: chat(`${i} ${huge}`),
        });
        return { res, ms: performance.now() - started };
      }),
    );
    const slowest = await slowestHealth(serve.port, replies);
    for (const { res, ms } of await replies) {
      expect(res.status).toBe(400);
      expect(errorOf(res)).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
      expect(errorOf(res).message).toContain('context length is 4096 tokens');
      // Tokenizing 6 MB takes seconds; the refusal needs none of it (generous bound for a busy machine).
      expect(ms).toBeLessThan(3000);
    }
    expect(slowest).toBeLessThan(1500);
  });

  test('while long prompts that fit are prefilled, /health still answers quickly', async () => {
    const long = WORDS.repeat(90); // about 2900 tokens each
    const replies = Promise.all(
      ['a', 'b', 'c'].map((i) =>
        request(serve.port, { method: 'POST', path: '/v1/chat/completions', headers: JSON_TYPE, body: chat(`${i} ${long}`) }),
      ),
    );
    const slowest = await slowestHealth(serve.port, replies);
    for (const res of await replies) {
      expect(res.status).toBe(200);
      expect((res.json as { usage: { prompt_tokens: number } }).usage.prompt_tokens).toBeGreaterThan(2000);
    }
    expect(slowest).toBeLessThan(1500);
  });
});

describe('--api-key, --cors and --allowed-hosts', () => {
  const key = 'test-key-4f1c';
  const app = 'http://app.example:3000';
  let serve: ServeProcess;
  beforeAll(async () => {
    serve = await startServe(['--model', CHAT_TINY, '--api-key', key, '--cors', app, '--allowed-hosts', 'models.internal,other.internal']);
  });
  afterAll(() => serve?.stop());

  test('requests without the key, or with another, get 401 with an OpenAI error; with it they are served; /health stays open', async () => {
    const missing = await request(serve.port, { path: '/v1/models' });
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    expect(errorOf(missing)).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    expect(errorOf(missing).message).toContain('Authorization: Bearer');
    const post = await request(serve.port, { method: 'POST', path: '/v1/chat/completions', headers: JSON_TYPE, body: chat('hi') });
    expect(post.status).toBe(401);
    const wrong = new OpenAI({ apiKey: `${key}x`, baseURL: `${serve.origin}/v1`, maxRetries: 0, timeout: 30_000 });
    await expect(wrong.models.list()).rejects.toMatchObject({ status: 401 });
    const right = new OpenAI({ apiKey: key, baseURL: `${serve.origin}/v1`, maxRetries: 0, timeout: 30_000 });
    const reply = await right.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
      temperature: 0,
    });
    expect(reply.choices[0].message.role).toBe('assistant');
    expect((await request(serve.port, { path: '/health' })).status).toBe(200);
  });

  test('a preflight from the allowed origin gets the CORS headers and its requests are readable; other origins get 403', async () => {
    const preflight = await request(serve.port, {
      method: 'OPTIONS',
      path: '/v1/chat/completions',
      headers: {
        Origin: app,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization, content-type, x-stainless-lang',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(app);
    expect(preflight.headers['access-control-allow-methods']).toMatch(/\bPOST\b/);
    const allowedHeaders = preflight.headers['access-control-allow-headers']!.toLowerCase().split(/,\s*/);
    expect(allowedHeaders).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-stainless-lang']));
    expect(Number(preflight.headers['access-control-max-age'])).toBeGreaterThan(0);
    expect(preflight.headers.vary).toMatch(/\bOrigin\b/);

    const post = await request(serve.port, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { ...JSON_TYPE, Origin: app, Authorization: `Bearer ${key}` },
      body: chat('hi'),
    });
    expect(post.status).toBe(200);
    expect(post.headers['access-control-allow-origin']).toBe(app);
    expect(post.headers.vary).toMatch(/\bOrigin\b/);
    // A 401 is readable by the allowed page too, so it can tell its user what is wrong.
    const unauthorized = await request(serve.port, { path: '/v1/models', headers: { Origin: app } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers['access-control-allow-origin']).toBe(app);

    const other = await request(serve.port, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { ...JSON_TYPE, Origin: 'http://app.example:4000', Authorization: `Bearer ${key}` },
      body: chat('hi'),
    });
    expect(other.status).toBe(403);
    expect(errorOf(other).message).toContain(app);
  });

  test('the names given to --allowed-hosts are accepted in Host; other names still get 403', async () => {
    const auth = { Authorization: `Bearer ${key}` };
    expect((await request(serve.port, { path: '/v1/models', headers: { ...auth, Host: `models.internal:${serve.port}` } })).status).toBe(
      200,
    );
    expect((await request(serve.port, { path: '/v1/models', headers: { ...auth, Host: 'other.internal' } })).status).toBe(200);
    expect((await request(serve.port, { path: '/v1/models', headers: { ...auth, Host: `evil.internal:${serve.port}` } })).status).toBe(403);
  });
});

describe('GRANITEFLOW_API_KEY, --allow-any-host, --cors "*"', () => {
  let serve: ServeProcess;
  beforeAll(async () => {
    serve = await startServe(['--model', CHAT_TINY, '--allow-any-host', '--cors', '*'], { GRANITEFLOW_API_KEY: 'from-env-9d2e' });
  });
  afterAll(() => serve?.stop());

  test('the key comes from the environment; any Host and any Origin are served', async () => {
    const headers = { Host: 'anything.example', Origin: 'https://some.site' };
    expect((await request(serve.port, { path: '/v1/models', headers })).status).toBe(401);
    const res = await request(serve.port, { path: '/v1/models', headers: { ...headers, Authorization: 'Bearer from-env-9d2e' } });
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('usage errors', () => {
  test.each([
    [['--cors', 'app.example/path'], '--cors'],
    [['--allowed-hosts', 'http://models.internal/'], '--allowed-hosts'],
    [['--allowed-hosts', 'a.internal', '--allow-any-host'], '--allow-any-host'],
    [['--api-key', 'has space'], '--api-key'],
  ])('serve %j exits 2 naming %s', async (args, name) => {
    const r = await runCli(['serve', '--port', '0', ...args], { timeoutMs: 30_000 });
    expectCleanError(r, 2);
    expect(r.stderr).toContain(name);
  });
});
