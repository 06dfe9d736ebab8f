// A packed checkpoint (graniteflow quantize's output) used by the built command: generate loads
// it as stored (memory-mapped where it can be), --verbose says how, inspect shows its sizes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint, nativeAddon } from '@graniteflow/core';
import { formatBytes } from '@graniteflow/granite';
import { GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');

let tmp: string;
let packed: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-packed-model-'));
  packed = path.join(tmp, 'chat_tiny-q4_0');
  const r = await runCli(['quantize', '--model', CHAT_TINY, '--dtype', 'q4_0', '--out', packed, '--quiet']);
  expect([r.code, r.stderr]).toEqual([0, '']);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const GREEDY = ['--temperature', '0', '--max-tokens', '6'];

test('generate --model <packed folder> "Hi" runs end to end, as chat_tiny quantized at load does', async () => {
  const fromPacked = await runCli(['generate', '--model', packed, '--quiet', ...GREEDY, 'Hi']);
  expect([fromPacked.code, fromPacked.stderr]).toEqual([0, '']);
  expect(fromPacked.stdout.trim().length).toBeGreaterThan(0);
  // Same bytes, same kernels: the same greedy text as quantizing the original while loading.
  const atLoad = await runCli(['generate', '--model', CHAT_TINY, '--dtype', 'q4_0', '--quiet', ...GREEDY, 'Hi']);
  expect(atLoad.code).toBe(0);
  expect(fromPacked.stdout).toBe(atLoad.stdout);
  if (nativeAddon() === null) return;
  // Native: the weights are views of the mapping, run by the packed SIMD kernels.
  const mapped = await runCli(['generate', '--model', packed, '--backend', 'native', '--quiet', ...GREEDY, 'Hi']);
  const nativeAtLoad = await runCli([
    'generate',
    '--model',
    CHAT_TINY,
    '--backend',
    'native',
    '--dtype',
    'q4_0',
    '--quiet',
    ...GREEDY,
    'Hi',
  ]);
  expect([mapped.code, mapped.stderr]).toEqual([0, '']);
  expect(mapped.stdout).toBe(nativeAtLoad.stdout);
});

test('generate --verbose says how the weights are held: q4_0 from the packed folder, mapped on cpu when the native addon loads, read on wasm', async () => {
  const weightsLine = async (backend: string) => {
    const r = await runCli(['generate', '--model', packed, '--backend', backend, '--verbose', ...GREEDY, 'Hi']);
    expect(r.code).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.startsWith('Weights: '));
    expect(line).toMatch(/^Weights: q4_0 \d+ tensors [\d.]+ \w?i?B, f32 \d+ tensors/);
    return line!;
  };
  const cpu = await weightsLine('cpu');
  if (nativeAddon() !== null) expect(cpu).toMatch(/packed checkpoint, memory-mapped: [\d.]+ \w?i?B are pages of its files/);
  else expect(cpu).toMatch(/packed checkpoint, read into memory \(not mapped: the native addon is unavailable/);
  expect(await weightsLine('wasm')).toMatch(
    /packed checkpoint, read into memory \(not mapped: the wasm backend keeps tensors in its own memory/,
  );
  const plain = await runCli(['generate', '--model', CHAT_TINY, '--verbose', ...GREEDY, 'Hi']);
  expect(plain.stderr).toMatch(/^Weights: f32 \d+ tensors [^\n]*; read from a float checkpoint\.$/m);
});

test('inspect of a packed folder shows the packed sizes of its files and the memory as stored', async () => {
  const checkpoint = Checkpoint.open(packed);
  let packedBytes = 0;
  let packedTensors = 0;
  for (const name of checkpoint.names()) {
    const info = checkpoint.info(name);
    if (info.packed?.format === 'q4_0') {
      packedBytes += info.byteLength;
      packedTensors++;
    }
  }
  checkpoint.close();
  const text = await runCli(['inspect', packed]);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/Checkpoint in the folder: packed \(graniteflow quantize\), 1 file, /);
  expect(text.stdout).toMatch(new RegExp(`\\n\\s+q4_0\\s+${packedTensors}\\s+${formatBytes(packedBytes).replace('.', '\\.')}\\n`));
  expect(text.stdout).toMatch(/Loaded as stored \(no --dtype\): [\d.]+ \w?i?B of weights/);
  const json = await runCli(['inspect', packed, '--json']);
  const report = JSON.parse(json.stdout);
  expect(report.checkpoint.packed).toBe(true);
  expect(report.checkpoint.dtypes).toContainEqual({ dtype: 'q4_0', tensors: packedTensors, bytes: packedBytes });
  expect(report.checkpoint.asStored.dtype).toBe('q4_0');
  // As stored equals the q4_0 row of the config's own estimate (the same policy wrote the folder).
  expect(report.checkpoint.asStored.weightBytes).toBe(report.memory.find((m: { dtype: string }) => m.dtype === 'q4_0').weightBytes);
});
