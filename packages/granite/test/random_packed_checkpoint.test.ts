// writeRandomPackedCheckpoint: a packed checkpoint written straight from random draws (no float
// stage), in bounded memory, that loads as a packed model.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, dequantizeRowsInto, isBackendAvailable } from '@graniteflow/core';
import { expectNoTensorLeak } from '@graniteflow/core/testing';
import { fromPretrained, parseConfig, planWeightDtypes, preset, writeRandomPackedCheckpoint, parameterShapes } from '../src';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-random-packed-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A tiny model at real layer widths. */
const small = parseConfig({
  ...preset('granite-4.0-h-tiny'),
  time_step_limit: null,
  hidden_size: 64,
  num_hidden_layers: 2,
  layer_types: ['mamba', 'attention'],
  num_attention_heads: 4,
  num_key_value_heads: 2,
  mamba_n_heads: 4,
  mamba_d_head: 32,
  mamba_d_state: 16,
  num_local_experts: 4,
  num_experts_per_tok: 2,
  intermediate_size: 64,
  shared_intermediate_size: 64,
  vocab_size: 256,
});

function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

describe('writeRandomPackedCheckpoint', () => {
  it('writes every weight the policy packs in the format asked, the rest as BF16, with the fixed initial values', async () => {
    const dir = path.join(tmp, 'small');
    const files = await writeRandomPackedCheckpoint(dir, small, { format: 'q4_0', seed: 7, std: 0.1 });
    expect(files).toEqual(['model.safetensors']);
    const plan = planWeightDtypes(parameterShapes(small), { dtype: 'q4_0' });
    const checkpoint = Checkpoint.open(dir);
    try {
      expect(checkpoint.names().sort()).toEqual([...plan.dtypes.keys()].sort());
      for (const [name, dtype] of plan.dtypes) {
        const info = checkpoint.info(name);
        expect([name, info.packed?.format ?? info.dtype]).toEqual([name, dtype === 'f32' ? 'BF16' : dtype]);
      }
      // A_log is log(1..heads), as Hugging Face initialises it; a packed weight's values lie
      // within the uniform draw's range (√3·std, plus q4_0's rounding of at most one step).
      const aLog = checkpoint.read('model.layers.0.mamba.A_log').data;
      expect(Array.from(aLog)).toEqual(Array.from({ length: 4 }, (_, i) => Math.fround(bf16(Math.log(i + 1)))));
      const name = 'model.layers.0.mamba.in_proj.weight';
      const shape = checkpoint.info(name).packed!.shape;
      const values = new Float32Array(shape[0] * shape[1]);
      dequantizeRowsInto('q4_0', checkpoint.readBytes(name), shape[1], 0, shape[0], values);
      const limit = Math.sqrt(3) * 0.1;
      const max = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(max).toBeGreaterThan(0.8 * limit);
      expect(max).toBeLessThanOrEqual(limit * (1 + 2 / 7));
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      expect(Math.abs(mean)).toBeLessThan(0.01);
    } finally {
      checkpoint.close();
    }
  });

  it('draws the same values whatever the shards (each row from its own seed)', async () => {
    const one = path.join(tmp, 'one');
    const sharded = path.join(tmp, 'sharded');
    await writeRandomPackedCheckpoint(one, small, { format: 'q8_0', seed: 3 });
    const files = await writeRandomPackedCheckpoint(sharded, small, { format: 'q8_0', seed: 3, maxShardBytes: 20_000 });
    expect(files.length).toBeGreaterThan(3);
    expect(files[files.length - 1]).toBe('model.safetensors.index.json');
    const [a, b] = [Checkpoint.open(one), Checkpoint.open(sharded)];
    try {
      for (const name of a.names())
        expect([name, Buffer.compare(Buffer.from(a.readBytes(name)), Buffer.from(b.readBytes(name)))]).toEqual([name, 0]);
    } finally {
      a.close();
      b.close();
    }
    const other = path.join(tmp, 'other-seed');
    await writeRandomPackedCheckpoint(other, small, { format: 'q8_0', seed: 4 });
    const c = Checkpoint.open(other);
    const d = Checkpoint.open(one);
    const key = 'model.embed_tokens.weight';
    expect(Buffer.compare(Buffer.from(c.readBytes(key)), Buffer.from(d.readBytes(key)))).not.toBe(0);
    c.close();
    d.close();
  });

  it('streams a ~200 MB q4_0 checkpoint in bounded memory, and it loads packed and runs', async () => {
    // 2 layers of H-Tiny's widths with 48 experts: 175 MB at q4_0.
    const config = parseConfig({
      ...preset('granite-4.0-h-tiny'),
      time_step_limit: null,
      num_hidden_layers: 2,
      layer_types: ['mamba', 'attention'],
      num_local_experts: 48,
      vocab_size: 32768,
    });
    const dir = path.join(tmp, 'large');
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const started = Date.now();
    await writeRandomPackedCheckpoint(dir, config, {
      format: 'q4_0',
      onProgress: () => {
        peak = Math.max(peak, process.memoryUsage().rss);
      },
    });
    const writeMs = Date.now() - started;
    const bytes = folderBytes(dir);
    console.log(
      `wrote ${(bytes / 2 ** 20).toFixed(1)} MiB in ${writeMs} ms; peak RSS growth ${((peak - before) / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(bytes).toBeGreaterThan(150e6);
    expect(peak - before).toBeLessThan(bytes / 4);

    const backend = isBackendAvailable('native') ? 'native' : 'cpu';
    const loadStarted = Date.now();
    const granite = await fromPretrained(dir, { backend });
    const loadMs = Date.now() - loadStarted;
    try {
      console.log(
        `loaded on ${backend} in ${loadMs} ms: ${JSON.stringify(granite.weightsSource)}; RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
      );
      expect(granite.weightSummary()[0]).toMatchObject({ dtype: 'q4_0' });
      await expectNoTensorLeak(() => {
        const logits = tf.tidy(() =>
          granite.model.forward(tf.tensor2d([[1, 2, 3]], undefined, 'int32'), { logits: 'last' }).logits!.dataSync(),
        );
        expect(logits.length).toBe(32768);
        expect(logits.every((v) => Number.isFinite(v))).toBe(true);
      });
    } finally {
      granite.dispose();
    }
  }, 120_000);
});

/** `x` rounded to bf16, as a number. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) << 16;
  return f[0];
}
