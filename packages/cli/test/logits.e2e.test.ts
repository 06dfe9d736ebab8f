// `graniteflow logits`: the .npy it writes equals the golden reference logits.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readNpy } from '@graniteflow/core';
import { GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-logits-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Inputs {
  prompts: number[][];
  attention_mask: number[][];
}

/** Expected logits [T, V] of prompt `i`: its real (unpadded) positions in the padded batch. */
function expectedRows(folder: string, i: number): { rows: Float32Array; t: number; v: number } {
  const inputs = JSON.parse(fs.readFileSync(path.join(folder, 'inputs.json'), 'utf8')) as Inputs;
  const npy = readNpy(path.join(folder, 'logits.npy'));
  const [, seq, vocab] = npy.shape;
  const t = inputs.prompts[i].length;
  const start = i * seq * vocab + (seq - t) * vocab; // left padding comes first
  return { rows: (npy.data as Float32Array).subarray(start, start + t * vocab), t, v: vocab };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test.each([
  ['micro_dense', 0],
  ['micro_dense', 1],
  ['tiny_moe', 1],
])('%s prompt %d: logits within 1e-4 of the reference', async (name, i) => {
  const folder = path.join(GOLDEN, name);
  const inputs = JSON.parse(fs.readFileSync(path.join(folder, 'inputs.json'), 'utf8')) as Inputs;
  const out = path.join(tmp, `${name}-${i}.npy`);
  const r = await runCli(['logits', '--model', folder, '--ids', inputs.prompts[i].join(','), '--out', out]);
  expect(r.stderr).toMatch(/Wrote float32 logits/);
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(out);
  const got = readNpy(out);
  const want = expectedRows(folder, i);
  expect(got.shape).toEqual([want.t, want.v]);
  expect(got.data).toBeInstanceOf(Float32Array);
  expect(maxAbsDiff(got.data as Float32Array, want.rows)).toBeLessThan(1e-4);
});

test('--text tokenizes with the model tokenizer; the default output is logits.npy in the working directory', async () => {
  const r = await runCli(['logits', '--model', CHAT_TINY, '--quiet', '--text', 'Hello'], { cwd: tmp });
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  const got = readNpy(path.join(tmp, 'logits.npy'));
  expect(got.shape[1]).toBe(1024);
  expect(got.shape[0]).toBeGreaterThan(0);
});

test('an id outside the vocabulary is a usage error', async () => {
  const r = await runCli(['logits', '--model', CHAT_TINY, '--quiet', '--ids', '1,5000'], { cwd: tmp });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/5000 is outside the vocabulary \[0, 1024\)/);
});
