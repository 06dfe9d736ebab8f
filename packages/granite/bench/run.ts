/**
 * Granite benchmark: random-weight models with the real H-Micro and H-Tiny layer shapes (fewer
 * layers than released, so the weights fit the wasm heap), loaded from a BF16 checkpoint written
 * here: load time, prefill tokens/s at 128 and 512 tokens, decode tokens/s, peak RSS, on wasm and
 * cpu. Writes bench-results/granite.json next to the printed table.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { formatTable, initBackend } from '@graniteflow/core';
import { fromPretrained, parseConfig, preset, writeRandomCheckpoint, type GraniteMoeHybridConfig } from '../src';

interface Case {
  label: string;
  base: string;
  /** Layers kept (attention ones first at their real index modulo): a slice of the released stack. */
  layerTypes: ('mamba' | 'attention')[];
}

const CASES: Case[] = [
  { label: 'h-micro shapes, 4 of 40 layers (3 mamba + 1 attention)', base: 'granite-4.0-h-micro', layerTypes: ['mamba', 'mamba', 'mamba', 'attention'] },
  { label: 'h-tiny shapes, 3 of 40 layers (2 mamba + 1 attention)', base: 'granite-4.0-h-tiny', layerTypes: ['mamba', 'attention', 'mamba'] },
];

/** cpu runs ~40x slower than wasm: fewer prefill lengths there keep the run short. */
const PREFILL: Record<string, number[]> = { wasm: [128, 512], cpu: [128] };
const DECODE_STEPS: Record<string, number> = { wasm: 16, cpu: 4 };

function shrink(base: GraniteMoeHybridConfig, layerTypes: Case['layerTypes']): GraniteMoeHybridConfig {
  return parseConfig({ ...base, time_step_limit: null, num_hidden_layers: layerTypes.length, layer_types: layerTypes });
}

interface Measurement {
  loadSeconds: number;
  prefillTokensPerSecond: Record<number, number>;
  decodeTokensPerSecond: number;
  peakRssBytes: number;
}

/** The process's peak resident set (Linux VmHWM), else the current RSS. */
function peakRssBytes(): number {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (kb !== undefined) return Number(kb) * 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage().rss;
}

/** One model on one backend, in its own process so peak RSS is that run's alone. */
async function measureOne(dir: string, backend: string): Promise<Measurement> {
  await initBackend(backend);
  const loadStart = performance.now();
  const granite = await fromPretrained(dir, { backend });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  // The first product with each weight makes XNNPACK pack it; time steady state, not that.
  tf.tidy(() => {
    granite.model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32'), { logits: 'last' }).logits!.dataSync();
  });
  const prefill: Record<number, number> = {};
  for (const n of PREFILL[backend]) {
    const ids = Array.from({ length: n }, (_, i) => (i * 7919) % 100000);
    const start = performance.now();
    tf.tidy(() => {
      granite.model.forward(tf.tensor2d([ids], undefined, 'int32'), { logits: 'last' }).logits!.dataSync();
    });
    prefill[n] = n / ((performance.now() - start) / 1000);
  }
  const steps = DECODE_STEPS[backend];
  const cache = granite.makeCache(1);
  tf.tidy(() => {
    granite.model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32'), { cache, logits: 'none' });
  });
  const start = performance.now();
  for (let s = 0; s < steps; s++) {
    tf.tidy(() => {
      granite.model.forward(tf.tensor2d([[5 + s]], undefined, 'int32'), { cache, logits: 'last' }).logits!.dataSync();
    });
  }
  const decode = steps / ((performance.now() - start) / 1000);
  cache.dispose();
  granite.dispose();
  return { loadSeconds, prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode, peakRssBytes: peakRssBytes() };
}

async function main() {
  const rows: (string | number)[][] = [['model', 'backend', 'load s', 'prefill 128 tok/s', 'prefill 512 tok/s', 'decode tok/s', 'peak RSS GiB']];
  const results: unknown[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-bench-'));
  try {
    for (const c of CASES) {
      const cfg = shrink(preset(c.base), c.layerTypes);
      const dir = path.join(tmp, c.base);
      const t0 = performance.now();
      writeRandomCheckpoint(dir, cfg, { seed: 1 });
      console.error(`${c.label}: wrote a random BF16 checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      for (const backend of ['wasm', 'cpu']) {
        const child = spawnSync(process.execPath, [...process.execArgv, __filename, '--one', dir, backend], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
          maxBuffer: 1 << 20,
        });
        if (child.status !== 0) throw new Error(`${c.label} on ${backend} failed (exit ${child.status})`);
        const m = JSON.parse(child.stdout.trim().split('\n').pop()!) as Measurement;
        rows.push([c.label, backend, m.loadSeconds, m.prefillTokensPerSecond[128] ?? 'skipped', m.prefillTokensPerSecond[512] ?? 'skipped (cpu)', m.decodeTokensPerSecond, m.peakRssBytes / 1024 ** 3]);
        results.push({ model: c.label, base: c.base, layers: c.layerTypes, backend, ...m });
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(formatTable(rows));
  console.log('Random weights; the real layer shapes (hidden size, heads, experts, vocab 100352) with fewer layers than released: the full models do not fit the wasm heap in float32.');
  const out = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'granite.json'), JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
}

const oneAt = process.argv.indexOf('--one');
(oneAt >= 0
  ? measureOne(process.argv[oneAt + 1], process.argv[oneAt + 2]).then((m) => console.log(JSON.stringify(m)))
  : main()
).catch((err) => {
  console.error(err);
  process.exit(1);
});
