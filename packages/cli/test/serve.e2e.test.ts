// `graniteflow serve` as a process, driven by the openai client over 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import OpenAI from 'openai';
import { assertBuilt, BIN, GOLDEN, REPO_DIR } from './helpers/cli';

// The golden checkpoint, whose greedy replies are known (the embedded demo model's change whenever it is retrained).
const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');

let child: ChildProcess;
let stderr = '';
let baseURL: string;

beforeAll(async () => {
  assertBuilt();
  child = spawn(
    process.execPath,
    [BIN, 'serve', '--model', CHAT_TINY, '--port', '0', '--served-model-name', 'granite-test', '--max-queue', '2'],
    {
      cwd: REPO_DIR,
      env: { ...process.env, GRANITEFLOW_BACKEND: 'wasm' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  baseURL = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 30_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
});

afterAll(async () => {
  if (child.exitCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
});

test('chat completions, streamed and not, and a conversation that resumes', async () => {
  const client = new OpenAI({ apiKey: 'unused', baseURL, maxRetries: 0, timeout: 30_000 });
  expect((await client.models.list()).data[0].id).toBe('granite-test');
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is free software?' }];
  const plain = await client.chat.completions.create({ model: 'granite-test', messages, temperature: 0, max_tokens: 8 });
  expect(plain.choices[0].message.content).toBe('pt::<|fim_middle|>feri modifyso'); // the golden chat_tiny text
  let streamed = '';
  for await (const chunk of await client.chat.completions.create({
    model: 'granite-test',
    messages,
    temperature: 0,
    max_tokens: 8,
    stream: true,
  })) {
    streamed += chunk.choices[0]?.delta.content ?? '';
  }
  expect(streamed).toBe(plain.choices[0].message.content);
  messages.push({ role: 'assistant', content: plain.choices[0].message.content }, { role: 'user', content: 'Why?' });
  const next = await client.chat.completions.create({ model: 'granite-test', messages, temperature: 0, max_tokens: 4 });
  expect(next.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(plain.usage!.prompt_tokens);
  // One log line per request on stderr (written just after the response), with the tokens resumed.
  const line = new RegExp(
    `POST /v1/chat/completions 200 prompt=${next.usage!.prompt_tokens} cached=${next.usage!.prompt_tokens_details!.cached_tokens} prefill=\\d+ `,
  );
  for (let i = 0; i < 100 && !line.test(stderr); i++) await new Promise((r) => setTimeout(r, 20));
  expect(stderr).toMatch(line);
});

test('concurrent requests are queued and all answered; /health', async () => {
  const client = new OpenAI({ apiKey: 'unused', baseURL, maxRetries: 0, timeout: 30_000 });
  const prompts = ['one', 'two', 'three'];
  const replies = await Promise.all(
    prompts.map((p) => client.completions.create({ model: 'granite-test', prompt: p, temperature: 0, max_tokens: 40 })),
  );
  for (const [i, r] of replies.entries()) {
    const alone = await client.completions.create({ model: 'granite-test', prompt: prompts[i], temperature: 0, max_tokens: 40 });
    expect(r.choices[0].text).toBe(alone.choices[0].text);
  }
  const health = (await (await fetch(baseURL.replace(/\/v1$/, '/health'))).json()) as { status: string; queue: { maxWaitingSeen: number } };
  expect(health.status).toBe('ok');
});

test('SIGTERM shuts the server down cleanly (exit 0)', async () => {
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stderr).not.toMatch(/error/i);
});
