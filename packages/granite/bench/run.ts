/**
 * Granite benchmark: random-weight models with the real H-Micro and H-Tiny layer shapes (fewer
 * layers than released, so the weights fit the wasm heap), loaded from a BF16 checkpoint written
 * here: load time, prefill tokens/s at 128 and 512 tokens, decode tokens/s, peak RSS, on native
 * (when built), wasm and cpu, with ratios against wasm. Writes bench-results/granite.json next to
 * the printed table.
 *
 * `--llamacpp` instead compares graniteflow with llama.cpp on the same weights (see llamacpp.ts):
 * `--preset NAME` (default granite-4.0-h-micro), `--layers` a count (the preset's first N layers;
 * its full depth for the released model) or a list such as `mamba,mamba,mamba,attention` (the
 * default: the 4-layer slice), `--formats q8_0,q4_0`, `--backend native` (graniteflow's), `--packed`
 * (graniteflow loads a packed checkpoint of each format, memory-mapped, instead of quantizing the
 * BF16 one while loading; its load s is then the mapped load).
 *
 * `--long` measures long prompts on the full model instead (see long_context.ts).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpoint,
  formatTable,
  initBackend,
  isBackendAvailable,
  measure,
  quantizeCheckpoint,
  type PackedFormat,
  type WeightDtype,
} from '@graniteflow/core';
import {
  fromPretrained,
  parseConfig,
  planWeightDtypes,
  preset,
  writeRandomCheckpoint,
  type GgufExportFormat,
  type GraniteMoeHybridConfig,
} from '../src';
import { benchLlamaCpp, llamaCppDir } from './llamacpp';
import { longContextBench, measureLength } from './long_context';

interface Case {
  label: string;
  base: string;
  /** Layers kept (attention ones first at their real index modulo): a slice of the released stack. */
  layerTypes: ('mamba' | 'attention')[];
}

const CASES: Case[] = [
  {
    label: 'h-micro shapes, 4 of 40 layers (3 mamba + 1 attention)',
    base: 'granite-4.0-h-micro',
    layerTypes: ['mamba', 'mamba', 'mamba', 'attention'],
  },
  {
    label: 'h-tiny shapes, 3 of 40 layers (2 mamba + 1 attention)',
    base: 'granite-4.0-h-tiny',
    layerTypes: ['mamba', 'attention', 'mamba'],
  },
];

/** cpu runs ~40x slower than wasm: fewer prefill lengths there keep the run short. */
const PREFILL: Record<string, number[]> = { native: [128, 512], wasm: [128, 512], cpu: [128] };
const DECODE_STEPS: Record<string, number> = { native: 16, wasm: 16, cpu: 4 };

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

/** One model on one backend (weights held as `dtype`), in its own process so peak RSS is that run's alone. */
async function measureOne(dir: string, backend: string, dtype: WeightDtype = 'f32'): Promise<Measurement> {
  await initBackend(backend);
  const loadStart = performance.now();
  const granite = await fromPretrained(dir, { backend, dtype });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  // Every timed path is warmed up at its own shape first (XNNPACK packs each weight on its first
  // product, shapes get their kernels), then timed 3 times: the median is reported.
  const timing = { warmup: 1, minRuns: 3, maxRuns: 3, minMs: 0 };
  const prefill: Record<number, number> = {};
  for (const n of PREFILL[backend]) {
    const ids = Array.from({ length: n }, (_, i) => (i * 7919) % 100000);
    const t = await measure(() => {
      tf.tidy(() => {
        granite.model.forward(tf.tensor2d([ids], undefined, 'int32'), { logits: 'last' }).logits!.dataSync();
      });
    }, timing);
    prefill[n] = n / (t.medianMs / 1000);
  }
  const steps = DECODE_STEPS[backend];
  const cache = granite.makeCache(1);
  tf.tidy(() => {
    granite.model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32'), { cache, logits: 'none' });
  });
  let token = 5;
  const t = await measure(() => {
    for (let s = 0; s < steps; s++) {
      tf.tidy(() => {
        granite.model.forward(tf.tensor2d([[token++]], undefined, 'int32'), { cache, logits: 'last' }).logits!.dataSync();
      });
    }
  }, timing);
  const decode = steps / (t.medianMs / 1000);
  cache.dispose();
  granite.dispose();
  return { loadSeconds, prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode, peakRssBytes: peakRssBytes() };
}

async function main() {
  // wasm is the baseline every other backend's figures are divided by (measured in the same run).
  const backends = [...(isBackendAvailable('native') ? ['native'] : []), 'wasm', 'cpu'];
  const rows: (string | number)[][] = [
    ['model', 'backend', 'load s', 'prefill 128 tok/s', '× wasm', 'prefill 512 tok/s', '× wasm', 'decode tok/s', '× wasm', 'peak RSS GiB'],
  ];
  const results: unknown[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-bench-'));
  try {
    for (const c of CASES) {
      const cfg = shrink(preset(c.base), c.layerTypes);
      const dir = path.join(tmp, c.base);
      const t0 = performance.now();
      writeRandomCheckpoint(dir, cfg, { seed: 1 });
      console.error(`${c.label}: wrote a random BF16 checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const measured = new Map<string, Measurement>();
      for (const backend of backends) measured.set(backend, measureInChild(dir, backend, 'f32', 2));
      const base = measured.get('wasm')!;
      const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? '-' : a / b);
      for (const [backend, m] of measured) {
        rows.push([
          c.label,
          backend,
          m.loadSeconds,
          m.prefillTokensPerSecond[128] ?? 'skipped',
          ratio(m.prefillTokensPerSecond[128], base.prefillTokensPerSecond[128]),
          m.prefillTokensPerSecond[512] ?? `skipped (${backend})`,
          ratio(m.prefillTokensPerSecond[512], base.prefillTokensPerSecond[512]),
          m.decodeTokensPerSecond,
          m.decodeTokensPerSecond / base.decodeTokensPerSecond,
          m.peakRssBytes / 1024 ** 3,
        ]);
        results.push({ model: c.label, base: c.base, layers: c.layerTypes, backend, ...m });
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(formatTable(rows));
  console.log(
    'Random weights; the real layer shapes (hidden size, heads, experts, vocab 100352) with fewer layers than released: the full models do not fit the wasm heap in float32. ' +
      'Each figure: the median of 3 timed runs after a warm-up at the same shape; × wasm: against the wasm row of the same model in this run.',
  );
  const out = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'granite.json'), JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
}

/** `measureOne` in a child process (its own peak RSS), with `threads` for the native backend. */
function measureInChild(dir: string, backend: string, dtype: WeightDtype, threads: number): Measurement {
  const child = spawnSync(process.execPath, [...process.execArgv, __filename, '--one', dir, backend, dtype], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, GRANITEFLOW_THREADS: String(threads) },
    timeout: 30 * 60_000,
    maxBuffer: 1 << 20,
  });
  if (child.status !== 0)
    throw new Error(`graniteflow on ${backend} (${dtype}) failed (exit ${child.status}${child.signal ? `, ${child.signal}` : ''})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as Measurement;
}

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

/** The layer types of `--layers`: a list, or the first N layers of the preset. */
function layerTypesOf(base: GraniteMoeHybridConfig, spec: string): Case['layerTypes'] {
  if (/^\d+$/.test(spec)) {
    const n = Number(spec);
    if (n < 1 || n > base.layer_types.length) throw new Error(`--layers ${n}: the preset has ${base.layer_types.length} layers.`);
    return base.layer_types.slice(0, n);
  }
  const types = spec.split(',');
  if (!types.every((t): t is 'mamba' | 'attention' => t === 'mamba' || t === 'attention')) {
    throw new Error(`--layers ${spec}: expected a count or a comma list of mamba / attention.`);
  }
  return types;
}

/** A packed checkpoint of `dir` in `format` (as `graniteflow quantize` writes it) in `out`. */
async function writePacked(dir: string, format: PackedFormat, out: string): Promise<void> {
  const checkpoint = Checkpoint.open(dir);
  try {
    const plan = planWeightDtypes(
      checkpoint.names().map((name) => [name, checkpoint.info(name).shape] as const),
      { dtype: format },
    );
    fs.mkdirSync(out, { recursive: true });
    await quantizeCheckpoint(checkpoint, out, { policy: (name) => plan.dtypes.get(name) ?? 'f32' });
    fs.copyFileSync(path.join(dir, 'config.json'), path.join(out, 'config.json'));
  } finally {
    checkpoint.close();
  }
}

/**
 * graniteflow and llama.cpp on the same random weights at real shapes, format by format, one
 * after the other in the same run (the machine is noisy: only ratios measured together mean
 * anything), with 2 threads each.
 */
async function compareWithLlamaCpp() {
  const found = llamaCppDir();
  if ('reason' in found) throw new Error(`--llamacpp: ${found.reason}`);
  const presetName = argValue('--preset') ?? 'granite-4.0-h-micro';
  const base = preset(presetName);
  const layerTypes = layerTypesOf(base, argValue('--layers') ?? 'mamba,mamba,mamba,attention');
  const formats = (argValue('--formats') ?? 'q8_0,q4_0').split(',') as GgufExportFormat[];
  const backend = argValue('--backend') ?? (isBackendAvailable('native') ? 'native' : 'wasm');
  const threads = 2;
  const cfg = shrink(base, layerTypes);
  const label = `${presetName}, ${layerTypes.length === base.layer_types.length ? 'all' : layerTypes.length} of ${base.layer_types.length} layers (${layerTypes.filter((t) => t === 'mamba').length} mamba + ${layerTypes.filter((t) => t === 'attention').length} attention)`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-bench-'));
  const rows: (string | number)[][] = [['format', 'measure', `graniteflow (${backend})`, 'llama.cpp', 'ours / llama.cpp']];
  const results: unknown[] = [];
  try {
    const dir = path.join(tmp, presetName);
    const t0 = performance.now();
    writeRandomCheckpoint(dir, cfg, { seed: 1 });
    console.error(`${label}: wrote a random BF16 checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    for (const format of formats) {
      let ourDir = dir;
      if (process.argv.includes('--packed') && format !== 'f32') {
        ourDir = path.join(tmp, `${presetName}-${format}`);
        const t1 = performance.now();
        await writePacked(dir, format as PackedFormat, ourDir);
        console.error(`${format}: wrote a packed checkpoint in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
      }
      const ours = measureInChild(ourDir, backend, format, threads);
      if (ourDir !== dir) fs.rmSync(ourDir, { recursive: true, force: true });
      console.error(`${format}: graniteflow ${JSON.stringify(ours)}`);
      const [theirs] = await benchLlamaCpp(dir, [format], { llamaDir: found.dir, threads, workDir: tmp });
      console.error(`${format}: llama.cpp ${JSON.stringify(theirs)}`);
      const line = (measure: string, a: number, b: number) => rows.push([format, measure, a, b, a / b]);
      line('load s', ours.loadSeconds, theirs.loadSeconds);
      for (const n of [128, 512]) line(`prefill ${n} tok/s`, ours.prefillTokensPerSecond[n], theirs.prefill[n]);
      line('decode tok/s', ours.decodeTokensPerSecond, theirs.decode);
      line('peak RSS GiB', ours.peakRssBytes / 2 ** 30, theirs.peakRssGiB);
      results.push({ format, graniteflow: { backend, threads, ...ours }, llamacpp: theirs });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`${label}, random weights, ${threads} threads`);
  console.log(formatTable(rows));
  console.log(
    'Ratios above 1 favour graniteflow for tok/s, llama.cpp for load s and peak RSS. GGUF: the same weights, 2-D ones in the format (the tied embedding too), norms / conv / router / SSM vectors f32.',
  );
  const out = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(
    path.join(out, 'granite-llamacpp.json'),
    JSON.stringify({ date: new Date().toISOString(), model: label, layers: layerTypes, results }, null, 2),
  );
}

const oneAt = process.argv.indexOf('--one');
const longOneAt = process.argv.indexOf('--long-one');
(oneAt >= 0
  ? measureOne(process.argv[oneAt + 1], process.argv[oneAt + 2], (process.argv[oneAt + 3] ?? 'f32') as WeightDtype).then((m) =>
      console.log(JSON.stringify(m)),
    )
  : longOneAt >= 0
    ? measureLength(process.argv[longOneAt + 1], process.argv[longOneAt + 2], Number(process.argv[longOneAt + 3])).then((m) =>
        console.log(JSON.stringify(m)),
      )
    : process.argv.includes('--long')
      ? longContextBench(argValue)
      : process.argv.includes('--llamacpp')
        ? compareWithLlamaCpp()
        : main()
).catch((err) => {
  console.error(err);
  process.exit(1);
});
