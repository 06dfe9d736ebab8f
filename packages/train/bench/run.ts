/**
 * Training throughput against inference prefill, in the same run: tokens per second of one AdamW
 * step (forward, backward, update) and of a forward pass alone, on each backend, for the kjv-demo
 * config and for one layer at H-Micro's widths. `npm run bench -w @graniteflow/train`
 * (`BENCH_BACKENDS=wasm,native`, `BENCH_CASES=demo`) → table on stdout, JSON in bench-results/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { formatTable, initBackend, isBackendAvailable, measure, type BackendName } from '@graniteflow/core';
import { causalLmLoss, GraniteMoeHybridForCausalLM, parseConfig, preset, type GraniteMoeHybridConfig } from '@graniteflow/granite';
import { AdamW, trainStep } from '../src';

interface Case {
  name: string;
  config: GraniteMoeHybridConfig;
  batch: number;
  seq: number;
}

const demo = parseConfig(JSON.parse(fs.readFileSync(path.join(__dirname, '../../../recipes/kjv-demo/config.json'), 'utf8')));
// One Mamba-2 layer with H-Micro's widths (hidden 2048, 64 heads of 64); a small vocabulary so the head does not dominate.
const microLayer = parseConfig({
  ...preset('granite-4.0-h-micro'),
  num_hidden_layers: 1,
  layer_types: ['mamba'],
  vocab_size: 2048,
  tie_word_embeddings: true,
});
const CASES: Case[] = [
  { name: 'kjv-demo (6 layers, 256 wide)', config: demo, batch: 4, seq: 256 },
  { name: 'one H-Micro Mamba-2 layer', config: microLayer, batch: 1, seq: 256 },
].filter((c) => !process.env.BENCH_CASES || process.env.BENCH_CASES.split(',').some((k) => c.name.startsWith(k)));
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'cpu,wasm,native')
  .split(',')
  .filter((b) => isBackendAvailable(b as BackendName)) as BackendName[];

async function main(): Promise<void> {
  const rows: (string | number)[][] = [['case', 'backend', 'tokens/step', 'prefill tok/s', 'train tok/s', 'train / prefill', 'train runs']];
  const results: unknown[] = [];
  for (const c of CASES) {
    for (const backend of BACKENDS) {
      await initBackend(backend);
      const model = new GraniteMoeHybridForCausalLM(c.config, { seed: 0 });
      const ids = Array.from({ length: c.batch }, (_, b) =>
        Array.from({ length: c.seq + 1 }, (_, t) => (b * 131 + t * 17) % c.config.vocab_size),
      );
      const batch = { inputs: ids.map((r) => r.slice(0, -1)), labels: ids.map((r) => r.slice(1)) };
      const input = tf.tensor2d(batch.inputs.flat(), [c.batch, c.seq], 'int32');
      const optimizer = new AdamW({ learningRate: 1e-4 });
      const tokens = c.batch * c.seq;
      const prefill = await measure(
        () => {
          const out = model.forward(input, { logits: 'all' });
          out.logits!.dataSync();
          out.logits!.dispose();
        },
        { warmup: 1, minRuns: 3, minMs: 2000 },
      );
      const step = () => trainStep(optimizer, [batch], (b) => causalLmLoss(model, b), { variables: model.trainableVariables() });
      // On the JavaScript-kernel backends a step can take minutes: one warm run (the runs column says so) keeps the bench bounded.
      const started = performance.now();
      step();
      const slow = performance.now() - started > 20_000;
      const train = await measure(step, { warmup: 0, minRuns: slow ? 1 : 3, minMs: slow ? 0 : 4000 });
      const prefillRate = tokens / (prefill.medianMs / 1000);
      const trainRate = tokens / (train.medianMs / 1000);
      rows.push([c.name, backend, tokens, prefillRate, trainRate, trainRate / prefillRate, train.runs]);
      results.push({ case: c.name, backend, tokens, prefill, train, prefillTokensPerSecond: prefillRate, trainTokensPerSecond: trainRate });
      console.error(`${c.name} on ${backend}: prefill ${prefillRate.toFixed(0)} tok/s, train ${trainRate.toFixed(0)} tok/s`);
      input.dispose();
      optimizer.dispose();
      model.dispose();
    }
  }
  console.log(formatTable(rows));
  const out = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'train.json'), JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
