// `graniteflow inspect`, in process (it reads only configs).
import * as path from 'node:path';
import { main } from '../src/main';
import type { CliIO } from '../src/io';
import type { InspectReport } from '../src/commands/inspect';
import { GOLDEN } from './helpers/cli';

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

test('a preset needs no download: layer map, parameters, memory per precision', async () => {
  const r = await run(['inspect', 'granite-4.0-h-tiny']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/built-in preset granite-4\.0-h-tiny/);
  expect(r.stdout).toMatch(/40 \(36 Mamba-2, 4 attention\)/);
  expect(r.stdout).toMatch(/MoE: 64 experts \(top 6\)/);
  expect(r.stdout).toMatch(/0-4 mamba, 5 attention, 6-14 mamba, 15 attention/);
  expect(r.stdout).toMatch(/^\s+fp32\s/m);
  expect(r.stdout).toMatch(/^\s+bf16\s/m);
  expect(r.stdout).toMatch(/^\s+int8\s/m);
});

test('--json: counts and memory figures follow from the config', async () => {
  const r = await run(['inspect', '--json', '--context-length', '1000', path.join(GOLDEN, 'chat_tiny')]);
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as InspectReport;
  const c = report.config;
  expect(report.layers.map((l) => l.type)).toEqual(['mamba', 'attention', 'mamba', 'mamba']);
  // Routed experts not chosen per token are the difference between total and active.
  const perExpert = 3 * c.hidden_size * c.intermediate_size;
  expect(report.parameters.total - report.parameters.active).toBe(c.num_hidden_layers * (c.num_local_experts - c.num_experts_per_tok) * perExpert);
  const [fp32, bf16, int8] = report.memory;
  expect(fp32.weightBytes).toBe(4 * report.parameters.total);
  expect(bf16.weightBytes).toBe(2 * report.parameters.total);
  expect(int8.weightBytes).toBe(report.parameters.total);
  // KV: attention layers × (K and V) × kv heads × head dim; Mamba: conv window + SSM state per layer.
  const headDim = c.hidden_size / c.num_attention_heads;
  expect(fp32.kvCacheBytesPerToken).toBe(4 * 1 * 2 * c.num_key_value_heads * headDim);
  const convDim = c.mamba_n_heads * c.mamba_d_head + 2 * c.mamba_n_groups * c.mamba_d_state;
  expect(fp32.mambaStateBytesPerSequence).toBe(4 * 3 * ((c.mamba_d_conv - 1) * convDim + c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state));
  expect(fp32.totalBytes).toBe(fp32.weightBytes + fp32.mambaStateBytesPerSequence + 1000 * fp32.kvCacheBytesPerToken);
});

test('no model inspects the embedded one; two models are a usage error; a missing one a runtime error', async () => {
  const embedded = await run(['inspect']);
  expect(embedded.code).toBe(0);
  expect(embedded.stdout).toMatch(/tiny-random-granite-4\.0-h/);
  const two = await run(['inspect', 'a', 'b']);
  expect(two.code).toBe(2);
  expect(two.stderr).toMatch(/one model/);
  const missing = await run(['inspect', './no/such/folder']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/No model at \.\/no\/such\/folder/);
});
