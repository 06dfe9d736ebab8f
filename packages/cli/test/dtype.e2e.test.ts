// --dtype on the commands that load a model, as users run them: the built command in a child process.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readNpy } from '@graniteflow/core';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const expectations = JSON.parse(fs.readFileSync(path.join(CHAT_TINY, 'text_expectations.json'), 'utf8')) as {
  max_new_tokens: number;
  cases: { kind: string; prompt: string; text: string }[];
};
const plain = expectations.cases.find((c) => c.kind === 'plain')!;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-dtype-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('generate --dtype q4_0 runs the embedded model with 4-bit weights, and says so while loading', async () => {
  const r = await runCli(['generate', '--dtype', 'q4_0', '--temperature', '0', '--max-tokens', '6', 'Hello']);
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  expect(r.stdout.length).toBeGreaterThan(1);
  expect(r.stderr).toMatch(/Loading tiny-kjv-granite-4\.0-h as q4_0/);
});

test('generate --dtype bf16 of a bf16 checkpoint loses nothing: the golden greedy text', async () => {
  const r = await runCli([
    'generate',
    '--model',
    CHAT_TINY,
    '--dtype',
    'bf16',
    '--quiet',
    '--temperature',
    '0',
    '--max-tokens',
    String(expectations.max_new_tokens),
    plain.prompt,
  ]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${plain.text}\n`);
});

test('logits --dtype: bf16 equals f32 on a bf16 checkpoint, q8_0 and q4_0 move the logits, q4_0 the most', async () => {
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  const logits: Record<string, Float32Array> = {};
  for (const dtype of ['f32', 'bf16', 'q8_0', 'q4_0']) {
    const out = path.join(tmp, `${dtype}.npy`);
    const r = await runCli(['logits', '--model', CHAT_TINY, '--dtype', dtype, '--ids', '5,6,7,8,9', '--out', out, '--quiet']);
    expect([dtype, r.code, r.stderr]).toEqual([dtype, 0, '']);
    logits[dtype] = readNpy(out).data as Float32Array;
  }
  expect(maxDiff(logits.bf16, logits.f32)).toBeLessThanOrEqual(1e-4);
  const q8 = maxDiff(logits.q8_0, logits.f32);
  const q4 = maxDiff(logits.q4_0, logits.f32);
  expect(q8).toBeGreaterThan(1e-3);
  expect(q4).toBeGreaterThan(q8);
});

test.each([
  ['generate', ['generate', '--dtype', 'q5', 'Hello']],
  ['chat', ['chat', '--dtype', 'q5']],
  ['serve', ['serve', '--dtype', 'q5', '--port', '0']],
  ['logits', ['logits', '--dtype', 'q5', '--ids', '1,2']],
])('%s --dtype q5 is a usage error naming the allowed values', async (command, args) => {
  const r = await runCli(args, { input: 'Hi\n', timeoutMs: 30_000 });
  expectCleanError(r, 2);
  expect(r.stderr).toContain('graniteflow: error: --dtype must be one of f32, bf16, q8_0, q4_0; got "q5".');
  expect(r.stderr).toContain(`Run "graniteflow ${command} --help" for usage.`);
  expect(r.stdout).toBe('');
});

test.each(['generate', 'chat', 'serve', 'logits'])('%s --help documents --dtype', async (command) => {
  const r = await runCli([command, '--help']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/--dtype D\s+hold the weight matrices as f32 \(default\), bf16, q8_0 or q4_0/);
});
