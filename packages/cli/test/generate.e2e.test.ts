// `graniteflow generate` as users run it: the built command in a child process.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GOLDEN, runCli } from './helpers/cli';

interface TextCase {
  kind: 'plain' | 'chat';
  prompt: string;
  messages?: { role: string; content: string }[];
  text: string;
  new_ids: number[];
}
const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const expectations = JSON.parse(fs.readFileSync(path.join(CHAT_TINY, 'text_expectations.json'), 'utf8')) as {
  max_new_tokens: number;
  cases: TextCase[];
};
const maxTokens = String(expectations.max_new_tokens);

describe('golden greedy generations of fixtures/golden/chat_tiny', () => {
  test.each(expectations.cases.filter((c) => c.kind === 'plain').map((c) => [c.prompt, c] as const))('plain %j', async (_, c) => {
    const r = await runCli(['generate', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', maxTokens, c.prompt]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${c.text}\n`);
  });

  test.each(expectations.cases.filter((c) => c.kind === 'chat').map((c) => [c.messages![0].content, c] as const))(
    '--chat %j',
    async (_, c) => {
      const r = await runCli([
        'generate',
        '--model',
        CHAT_TINY,
        '--chat',
        '--temperature',
        '0',
        '--max-tokens',
        maxTokens,
        '--quiet',
        c.messages![0].content,
      ]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`${c.text}\n`);
      expect(r.stderr).toBe(''); // --quiet: no progress bar
    },
  );
});

test('--prefill-chunk feeds the prompt in chunks with the same text; a bad value is a usage error', async () => {
  const c = expectations.cases.find((x) => x.kind === 'plain')!;
  const r = await runCli([
    'generate',
    '--model',
    CHAT_TINY,
    '--quiet',
    '--temperature',
    '0',
    '--max-tokens',
    maxTokens,
    '--prefill-chunk',
    '2',
    c.prompt,
  ]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${c.text}\n`);
  const bad = await runCli(['generate', '--quiet', '--prefill-chunk', '0', 'Hello']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--prefill-chunk/);
  expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
});

test('--prompt-file reads the prompt; --ctx bounds the context; --truncate cuts a long prompt from the left', async () => {
  const c = expectations.cases.find((x) => x.kind === 'plain')!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-prompt-'));
  try {
    const file = path.join(dir, 'long.txt');
    fs.writeFileSync(file, c.prompt);
    const fromFile = await runCli([
      'generate',
      '--model',
      CHAT_TINY,
      '--quiet',
      '--max-tokens',
      maxTokens,
      '--ctx',
      '4096',
      '--prompt-file',
      file,
    ]);
    expect([fromFile.code, fromFile.stdout]).toEqual([0, `${c.text}\n`]);

    const tooLong = await runCli(['generate', '--model', CHAT_TINY, '--quiet', '--ctx', '3', '--prompt-file', file]);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toMatch(
      /The prompt has \d+ tokens but the context holds 3 \(--ctx, at most max_position_embeddings = 4096\): shorten it, raise --ctx, or pass --truncate/,
    );

    const cut = await runCli(['generate', '--model', CHAT_TINY, '--ctx', '4', '--max-tokens', '2', '--truncate', '--prompt-file', file]);
    expect(cut.code).toBe(0);
    expect(cut.stderr).toMatch(
      /--truncate: the prompt has \d+ tokens; kept its last 2 so that they and --max-tokens 2 fit the context of 4\./,
    );

    const pastLimit = await runCli(['generate', '--model', CHAT_TINY, '--quiet', '--ctx', '5000', 'Hello']);
    expect(pastLimit.code).toBe(2);
    expect(pastLimit.stderr).toMatch(/--ctx 5000 is more than this model's max_position_embeddings \(4096 positions\)\./);

    const missing = await runCli(['generate', '--quiet', '--prompt-file', path.join(dir, 'absent.txt')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/Cannot read the prompt file .*absent\.txt: no such file\./);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('the embedded default model', () => {
  // Its weights are retrained from time to time (recipes/kjv-demo), so these tests check what the
  // command says and that it produces text, never the text itself.
  test('with no --model it runs the embedded tiny-kjv-granite-4.0-h and says, once, what that model is', async () => {
    const r = await runCli(['generate', '--temperature', '0', '--max-tokens', '12', 'In the beginning God created']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    expect(r.stderr.match(/trained on the King James Bible/g)).toHaveLength(1);
    expect(r.stderr).toMatch(/not one of IBM's Granite models/);
    expect(r.stderr).toMatch(/--model ibm-granite\/granite-4\.0-h-micro/);
    expect(r.stderr).toMatch(/Loading tiny-kjv-granite-4\.0-h/); // the progress bar (one line per state off a terminal)
  });

  test('--quiet hides the notice and the progress bar', async () => {
    const r = await runCli(['generate', '--quiet', '--max-tokens', '3', 'Hello']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.length).toBeGreaterThan(1);
  });
});

test('--json prints one JSON object per line: start, text events, done', async () => {
  const c = expectations.cases.find((x) => x.kind === 'chat')!;
  const r = await runCli([
    'generate',
    '--model',
    CHAT_TINY,
    '--chat',
    '--json',
    '--quiet',
    '--temperature',
    '0',
    '--max-tokens',
    maxTokens,
    c.messages![0].content,
  ]);
  expect(r.code).toBe(0);
  const events = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; text?: string; tokenIds?: number[]; finishReason?: string; promptTokens?: number });
  expect(events[0]).toMatchObject({ type: 'start', promptTokens: expect.any(Number) });
  const done = events[events.length - 1];
  expect(done).toMatchObject({ type: 'done', text: c.text, tokenIds: c.new_ids, finishReason: 'length' });
  const texts = events.filter((e) => e.type === 'text');
  expect(texts.length).toBeGreaterThan(1);
  expect(texts.map((e) => e.text).join('')).toBe(c.text);
  expect(texts.flatMap((e) => e.tokenIds)).toEqual(c.new_ids);
});

test('sampling: the same --seed gives the same text; --stop cuts before the stop text', async () => {
  const args = [
    'generate',
    '--model',
    CHAT_TINY,
    '--quiet',
    '--temperature',
    '0.9',
    '--top-k',
    '50',
    '--top-p',
    '0.95',
    '--seed',
    '123',
    '--max-tokens',
    '12',
    'Hello',
  ];
  const [a, b] = [await runCli(args), await runCli(args)];
  expect(a.code).toBe(0);
  expect(a.stdout).toBe(b.stdout);
  const c = expectations.cases[0];
  const stopped = await runCli([
    'generate',
    '--model',
    CHAT_TINY,
    '--quiet',
    '--temperature',
    '0',
    '--max-tokens',
    maxTokens,
    '--stop',
    'AMAG',
    c.prompt,
  ]);
  expect(stopped.stdout).toBe(`${c.text.slice(0, c.text.indexOf('AMAG'))}\n`);
});

test('--backend cpu gives the same golden text as the default wasm backend', async () => {
  const c = expectations.cases[0];
  const r = await runCli([
    'generate',
    '--backend',
    'cpu',
    '--model',
    CHAT_TINY,
    '--quiet',
    '--temperature',
    '0',
    '--max-tokens',
    maxTokens,
    c.prompt,
  ]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${c.text}\n`);
});

test('a prompt from standard input with "-"', async () => {
  const c = expectations.cases[0];
  const r = await runCli(['generate', '--model', CHAT_TINY, '--quiet', '--temperature', '0', '--max-tokens', maxTokens, '-'], {
    input: c.prompt,
  });
  expect(r.stdout).toBe(`${c.text}\n`);
});

test("the model's generation_config.json sets the sampling defaults (do_sample, temperature, top_p); flags override them", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-sampling-'));
  try {
    for (const f of fs.readdirSync(CHAT_TINY)) fs.copyFileSync(path.join(CHAT_TINY, f), path.join(dir, f));
    const config = JSON.parse(fs.readFileSync(path.join(CHAT_TINY, 'generation_config.json'), 'utf8'));
    fs.writeFileSync(
      path.join(dir, 'generation_config.json'),
      JSON.stringify({ ...config, do_sample: true, temperature: 1.5, top_p: 0.99 }),
    );
    const c = expectations.cases.find((x) => x.kind === 'plain')!;
    const run = (...flags: string[]) => runCli(['generate', '--model', dir, '--quiet', '--max-tokens', maxTokens, ...flags, c.prompt]);
    // Sampled by default now: seeded draws repeat, different seeds differ, neither is the greedy text.
    const [a, again, b] = await Promise.all([run('--seed', '1'), run('--seed', '1'), run('--seed', '2')]);
    for (const r of [a, again, b]) expect(r.code).toBe(0);
    expect(again.stdout).toBe(a.stdout);
    expect([a.stdout, b.stdout]).not.toContain(`${c.text}\n`);
    expect(b.stdout).not.toBe(a.stdout);
    // --temperature 0 is greedy again: the golden text.
    const greedy = await run('--temperature', '0');
    expect(greedy.stdout).toBe(`${c.text}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
