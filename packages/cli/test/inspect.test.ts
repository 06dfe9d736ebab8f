// `graniteflow inspect`, in process (it reads only configs).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../src/main';
import type { CliIO } from '../src/io';
import type { InspectReport } from '../src/commands/inspect';
import type { GraniteMoeHybridConfig } from '@graniteflow/granite';
import { formatCount } from '../src/format';
import { GOLDEN } from './helpers/cli';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-inspect-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A folder holding chat_tiny's config.json changed by `change`. */
function configFolder(name: string, change: (c: Record<string, unknown>) => void): string {
  const folder = path.join(tmp, name);
  fs.mkdirSync(folder);
  const config = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'chat_tiny', 'config.json'), 'utf8')) as Record<string, unknown>;
  change(config);
  fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(config));
  return folder;
}

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    stdin: process.stdin,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

test('a preset needs no download: layer map, parameters, memory per dtype', async () => {
  const r = await run(['inspect', 'granite-4.0-h-tiny']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/built-in preset granite-4\.0-h-tiny/);
  expect(r.stdout).toMatch(/40 \(36 Mamba-2, 4 attention\)/);
  expect(r.stdout).toMatch(/MoE: 64 experts \(top 6\)/);
  expect(r.stdout).toMatch(/0-4 mamba, 5 attention, 6-14 mamba, 15 attention/);
  for (const dtype of ['f32', 'bf16', 'q8_0', 'q4_0']) expect(r.stdout).toMatch(new RegExp(`^\\s+${dtype}\\s`, 'm'));
});

test('--json: counts and memory figures follow from the config', async () => {
  const r = await run(['inspect', '--json', '--context-length', '1000', path.join(GOLDEN, 'chat_tiny')]);
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as InspectReport;
  const c = report.config as GraniteMoeHybridConfig;
  expect(report.layers.map((l) => l.type)).toEqual(['mamba', 'attention', 'mamba', 'mamba']);
  // Routed experts not chosen per token are the difference between total and active.
  const perExpert = 3 * c.hidden_size * c.intermediate_size;
  expect(report.parameters.total - report.parameters.active).toBe(
    c.num_hidden_layers * (c.num_local_experts - c.num_experts_per_tok) * perExpert,
  );
  const [fp32, bf16, q8, q4] = report.memory;
  expect(report.memory.map((m) => m.dtype)).toEqual(['f32', 'bf16', 'q8_0', 'q4_0']);
  expect(fp32.weightBytes).toBe(4 * report.parameters.total);
  expect(fp32.packedParameters).toBe(0);
  // Packed: every matrix. Float32: norms, router, conv1d weight and bias, dt_bias / A_log / D, gated norm.
  const mambaLayers = c.layer_types.filter((t) => t === 'mamba').length;
  const convDimension = c.mamba_n_heads * c.mamba_d_head + 2 * c.mamba_n_groups * c.mamba_d_state;
  const floatHeld =
    c.num_hidden_layers * (2 * c.hidden_size + c.num_local_experts * c.hidden_size) +
    mambaLayers * (convDimension * (c.mamba_d_conv + 1) + 3 * c.mamba_n_heads + c.mamba_n_heads * c.mamba_d_head) +
    c.hidden_size;
  for (const m of [bf16, q8, q4]) expect(m.packedParameters).toBe(report.parameters.total - floatHeld);
  const packed = report.parameters.total - floatHeld;
  expect(bf16.weightBytes).toBe(4 * floatHeld + 2 * packed);
  expect(q8.weightBytes).toBe(4 * floatHeld + (packed / 32) * 34);
  expect(q4.weightBytes).toBe(4 * floatHeld + (packed / 32) * 18);
  // KV: attention layers × (K and V) × kv heads × head dim; Mamba: conv window + SSM state per layer.
  const headDim = c.hidden_size / c.num_attention_heads;
  expect(fp32.kvCacheBytesPerToken).toBe(4 * 1 * 2 * c.num_key_value_heads * headDim);
  const convDim = c.mamba_n_heads * c.mamba_d_head + 2 * c.mamba_n_groups * c.mamba_d_state;
  expect(fp32.mambaStateBytesPerSequence).toBe(
    4 * 3 * ((c.mamba_d_conv - 1) * convDim + c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state),
  );
  expect(fp32.totalBytes).toBe(
    fp32.weightBytes + fp32.mambaStateBytesPerSequence + 1000 * fp32.kvCacheBytesPerToken + fp32.activationBytes,
  );
  expect(fp32.activationBytes).toBeGreaterThan(512 * 4 * c.hidden_size); // a chunk's residual stream at least
});

test('no model inspects the embedded one; two models are a usage error; a missing one a runtime error', async () => {
  const embedded = await run(['inspect']);
  expect(embedded.code).toBe(0);
  expect(embedded.stdout).toMatch(/tiny-kjv-granite-4\.0-h/);
  const two = await run(['inspect', 'a', 'b']);
  expect(two.code).toBe(2);
  expect(two.stderr).toMatch(/one model/);
  const missing = await run(['inspect', './no/such/folder']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/No model at \.\/no\/such\/folder/);
});

test('a million layers is refused at once, naming the field and its range', async () => {
  const folder = configFolder('million', (c) => {
    delete c.layer_types;
    c.num_hidden_layers = 1_000_000;
  });
  const started = Date.now();
  const r = await run(['inspect', folder]);
  expect(Date.now() - started).toBeLessThan(5000);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toContain(
    `${path.join(folder, 'config.json')}: config field "num_hidden_layers" must be an integer from 1 to 4096, got 1000000`,
  );
});

test('the largest sizes print in bounded words, never Infinity or NaN', async () => {
  const folder = configFolder('largest', (c) => {
    Object.assign(c, {
      num_hidden_layers: 4096,
      layer_types: Array.from({ length: 4096 }, (_, i) => (i % 2 ? 'attention' : 'mamba')),
      hidden_size: 65_536,
      vocab_size: 4_194_304,
      num_attention_heads: 16_384,
      num_key_value_heads: 16_384,
      mamba_n_heads: 16_384,
      mamba_d_head: 'auto',
      mamba_expand: 64,
      num_local_experts: 4096,
      intermediate_size: 262_144,
      shared_intermediate_size: 262_144,
    });
  });
  const r = await run(['inspect', '--context-length', '1073741824', '--batch-size', '1048576', folder]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).not.toMatch(/Infinity|NaN/);
  expect(r.stdout).toMatch(/parameters\s+over 1000 T total/);
  expect(r.stdout).toMatch(/^\s+f32\s.*over 1024 EiB/m);
  const json = await run(['inspect', '--json', '--context-length', '1073741824', '--batch-size', '1048576', folder]);
  const report = JSON.parse(json.stdout) as InspectReport;
  for (const m of report.memory) expect(Number.isFinite(m.totalBytes)).toBe(true);
  const tooLong = await run(['inspect', '--context-length', '1e300', folder]);
  expect(tooLong.code).toBe(2);
  expect(tooLong.stderr).toMatch(/--context-length must be an integer ≥ 1 and ≤ 1073741824/);
});

test('a config.json that is a FIFO or a directory is named, at once', async () => {
  const fifo = path.join(tmp, 'fifo');
  fs.mkdirSync(fifo);
  execFileSync('mkfifo', [path.join(fifo, 'config.json')]);
  const r = await run(['inspect', fifo]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(`${path.join(fifo, 'config.json')} is a FIFO (named pipe), expected a regular file.`);
  const dir = path.join(tmp, 'dir');
  fs.mkdirSync(path.join(dir, 'config.json'), { recursive: true });
  const d = await run(['inspect', dir]);
  expect(d.code).toBe(1);
  expect(d.stderr).toContain(`${path.join(dir, 'config.json')} is a directory, expected a regular file.`);
});

test.each([
  [999, '999'],
  [1500, '1.5 K'],
  [6.9e9, '6.90 B'],
  [3.2e13, '32.00 T'],
  [1e15, 'over 1000 T'],
  [Infinity, 'over 1000 T'],
  [NaN, 'an unknown number'],
])('formatCount(%d) is %s', (n, text) => {
  expect(formatCount(n)).toBe(text);
});

test('the packed sizes per dtype, and which backends each fits (full H-Micro: wasm only at q4_0)', async () => {
  const json = await run(['inspect', '--json', 'granite-4.0-h-micro']);
  expect(json.code).toBe(0);
  const report = JSON.parse(json.stdout) as InspectReport;
  const byDtype = Object.fromEntries(report.memory.map((m) => [m.dtype, m]));
  // Computed by hand in granite's weight_policy.test.ts; llama.cpp's Q4_0 file of these weights is 1.80 GB.
  expect(byDtype.q4_0.weightBytes).toBe(1_798_953_984);
  expect(byDtype.f32.weightBytes).toBe(4 * 3_191_396_096);
  expect(byDtype.q4_0.fits.wasm).toBe(true);
  for (const dtype of ['f32', 'bf16', 'q8_0']) expect([dtype, byDtype[dtype].fits.wasm]).toEqual([dtype, false]);
  // native and cpu may fill 80% of this machine's memory.
  const hostLimit = Math.floor(0.8 * os.totalmem());
  expect(report.machineBytes).toBe(os.totalmem());
  for (const m of report.memory) {
    expect([m.dtype, m.fits.cpu]).toEqual([m.dtype, m.totalBytes <= hostLimit]);
    expect([m.dtype, m.fits.native]).toEqual([m.dtype, m.totalBytes <= hostLimit]);
  }
  const text = await run(['inspect', 'granite-4.0-h-micro']);
  expect(text.stdout).toMatch(/^\s+dtype\s+weights\s.*\s+native\s+wasm\s+cpu$/m);
  expect(text.stdout).toMatch(/^\s+q4_0\s+1\.7 GiB\s.*\s1\.9 GiB\s+(fits|-)\s+fits\s+(fits|-)$/m);
  expect(text.stdout).toMatch(/^\s+f32\s+11\.9 GiB\s.*\s12\.2 GiB\s+(fits|-)\s+-\s+(fits|-)$/m);
  expect(text.stdout).toMatch(/Limits: wasm 3\.0 GiB of tensors/);
});

test('a folder of the dense granite family: its own architecture lines, every layer attention, no Mamba state', async () => {
  const folder = path.join(tmp, 'granite-dense');
  fs.mkdirSync(folder);
  const config = {
    model_type: 'granite',
    vocab_size: 300,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    hidden_act: 'gelu',
    tie_word_embeddings: true,
  };
  fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify(config));
  const text = await run(['inspect', folder]);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/^model_type\s+granite$/m);
  expect(text.stdout).toMatch(/^layers\s+3 \(0 Mamba-2, 3 attention\)$/m);
  expect(text.stdout).toMatch(/^attention\s+4 query \/ 2 key-value heads of 16, rotary position embeddings \(RoPE, θ 10000\)$/m);
  expect(text.stdout).toMatch(/^feed-forward\s+dense: gated MLP \(gelu\) of 96$/m);
  const json = JSON.parse((await run(['inspect', '--json', folder])).stdout) as InspectReport;
  expect(json.layers.map((l) => l.type)).toEqual(['attention', 'attention', 'attention']);
  // Embedding (tied head) + per layer: 2 norms, q/k/v/o (64·64 + 2·64·32 + 64·64), gate/up/down (3·64·96) + the final norm.
  const perLayer = 2 * 64 + 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 96;
  expect(json.parameters).toEqual({ total: 300 * 64 + 3 * perLayer + 64, active: 300 * 64 + 3 * perLayer + 64 });
  const f32 = json.memory.find((m) => m.dtype === 'f32')!;
  expect([f32.mambaStateBytesPerSequence, f32.kvCacheBytesPerToken]).toEqual([0, 4 * 3 * 2 * 2 * 16]);
});
