/**
 * Packed vs float32 expert weights at Granite 4.0 H-Tiny expert shapes, on wasm, cpu and (when
 * `@graniteflow/native` loads) native: the whole sparse MoE block (router included), 1 token
 * (decode) and 64 tokens (a prefill chunk).
 * `npm run bench:packed -w @graniteflow/ops-moe` → table on stdout, JSON in
 * bench-results/ops-moe-packed.json. `BENCH_BACKENDS`, `BENCH_TOKENS`, `BENCH_FORMATS` narrow it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { formatTable, initBackend, isBackendAvailable, measure, PackedTensor, type BackendName, type WeightDtype } from '@graniteflow/core';
import { sparseMoe, type ExpertWeight } from '../src';

/** H-Tiny (packages/granite presets: granite-4.0-h-tiny). */
const SHAPE = { name: 'H-Tiny', hidden: 1536, inter: 512, experts: 64, topK: 6 };
const list = (env: string | undefined, fallback: string) => (env ?? fallback).split(',').map((s) => s.trim());
const BACKENDS = (list(process.env.BENCH_BACKENDS, 'wasm,cpu,native') as BackendName[]).filter((b) => isBackendAvailable(b));
const TOKENS = list(process.env.BENCH_TOKENS, '1,64').map(Number);
const FORMATS = list(process.env.BENCH_FORMATS, 'f32,bf16,q8_0,q4_0') as WeightDtype[];

/** Stacked expert weights [E, out, in] held as `format`. */
function expertWeight(format: WeightDtype, shape: number[], seed: number): ExpertWeight {
  const floats = tf.randomUniform(shape, -0.03, 0.03, 'float32', seed);
  if (format === 'f32') return floats;
  const packed = PackedTensor.fromTensor(format, floats);
  floats.dispose();
  return packed;
}

async function main(): Promise<void> {
  const { hidden: h, inter: i, experts: e, topK: k } = SHAPE;
  const rows: (string | number)[][] = [['backend', 'tokens', 'experts', 'MiB', 'ms (median)', 'runs', 'vs f32']];
  const results: object[] = [];
  for (const backend of BACKENDS) {
    await initBackend(backend);
    const wr = tf.randomNormal([e, h], 0, 1, 'float32', 1);
    for (const n of TOKENS) {
      const x = tf.randomNormal([n, h], 0, 1, 'float32', 4 + n);
      let f32Ms = NaN;
      for (const format of FORMATS) {
        const w1 = expertWeight(format, [e, 2 * i, h], 2);
        const w2 = expertWeight(format, [e, h, i], 3);
        const bytes = (w: ExpertWeight) => (w instanceof PackedTensor ? w.byteLength : w.size * 4);
        const mb = (bytes(w1) + bytes(w2)) / 2 ** 20;
        const timing = await measure(
          () => {
            const { output, routerLogits } = sparseMoe(x, wr, w1, w2, k);
            output.dataSync();
            tf.dispose([output, routerLogits]);
          },
          { warmup: 1, minRuns: 5, minMs: 300, maxRuns: 30 },
        );
        if (format === 'f32') f32Ms = timing.medianMs;
        const ratio = timing.medianMs / f32Ms;
        rows.push([backend, n, format, mb, timing.medianMs, timing.runs, Number.isNaN(ratio) ? '-' : ratio]);
        results.push({
          backend,
          tokens: n,
          format,
          expertMiB: mb,
          medianMs: timing.medianMs,
          minMs: timing.minMs,
          runs: timing.runs,
          vsF32: Number.isNaN(ratio) ? null : ratio,
        });
        console.error(rows[rows.length - 1].join('  '));
        tf.dispose([w1, w2].filter((w): w is tf.Tensor => w instanceof tf.Tensor));
        for (const w of [w1, w2]) if (w instanceof PackedTensor) w.dispose();
      }
      x.dispose();
    }
    wr.dispose();
  }
  console.log(formatTable(rows));
  console.log(
    `${SHAPE.name}: E ${e}, k ${k}, H ${h}, I ${i}; the whole block (router, top-k, routed experts, combine); ` +
      "vs f32 = time / the float32 experts' time on the same backend and token count, in this run.",
  );
  const dir = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(dir, { recursive: true });
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version };
  fs.writeFileSync(
    path.join(dir, 'ops-moe-packed.json'),
    JSON.stringify({ date: new Date().toISOString(), machine, shape: SHAPE, results }, null, 2),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
