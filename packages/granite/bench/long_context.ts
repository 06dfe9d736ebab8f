/**
 * Long prompts on the full model (`npx tsx bench/run.ts --long`): for each length, in a process of
 * its own (so its peak RSS is that length's alone), the prompt goes through in chunks of 512
 * (`prefillChunk`'s default) and then 16 tokens are decoded. Printed per length: prefill seconds
 * and ms per token, the attention layers' share of prefill, decode tok/s after the prompt, peak RSS
 * and the arithmetic it is held to (packed weights + KV of the attention layers + Mamba state).
 *
 * `--model DIR` a packed checkpoint (default: a random full H-Micro q4_0 written to a temporary
 * folder), `--lengths 1024,8192,32768` (131072 takes over an hour here), `--backend`. With
 * `--llamacpp` the same weights go through llama.cpp too (exported to GGUF, measured by
 * llamacpp_long.mjs through node-llama-cpp, the lengths one after the other), ratios printed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, formatTable, initBackend, isBackendAvailable } from '@graniteflow/core';
import {
  DEFAULT_PREFILL_CHUNK,
  exportGguf,
  fromPretrained,
  CausalSelfAttention,
  preset,
  writeRandomPackedCheckpoint,
  type GgufExportFormat,
} from '../src';
import { llamaCppDir } from './llamacpp';

/** What llamacpp_long.mjs prints. */
interface LlamaCppLongMeasurement {
  length: number;
  prefillSeconds: number;
  decodeTokensPerSecond: number;
  peakRssGiB: number;
}

/** The packed format most of a packed checkpoint's weights are in: the GGUF keeps it. */
function mainPackedFormat(dir: string): GgufExportFormat {
  const checkpoint = Checkpoint.open(dir);
  try {
    const counts = new Map<string, number>();
    for (const name of checkpoint.names()) {
      const format = checkpoint.info(name).packed?.format;
      if (format !== undefined) counts.set(format, (counts.get(format) ?? 0) + 1);
    }
    const [main] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? ['q4_0'];
    return main as GgufExportFormat;
  } finally {
    checkpoint.close();
  }
}

/** One length through llama.cpp on `gguf`, in a child process started in the node-llama-cpp folder. */
function llamaCppLength(llamaDir: string, gguf: string, length: number): LlamaCppLongMeasurement {
  const child = spawnSync(
    process.execPath,
    ['--import', path.join(__dirname, 'llamacpp_resolve.mjs'), path.join(__dirname, 'llamacpp_long.mjs'), gguf, String(length), '2'],
    {
      cwd: llamaDir,
      env: { ...process.env, GRANITEFLOW_LLAMACPP_DIR: llamaDir },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 4 * 3600_000,
      maxBuffer: 16 << 20,
    },
  );
  if (child.status !== 0)
    throw new Error(`llama.cpp at ${length} tokens failed: exit ${child.status}: ${(child.stderr ?? '').slice(-1500)}`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as LlamaCppLongMeasurement;
}

/** What one length measures. */
export interface LongContextMeasurement {
  length: number;
  prefillSeconds: number;
  /** Of prefillSeconds, inside the attention layers (projections and the attention kernel). */
  attentionSeconds: number;
  decodeTokensPerSecond: number;
  /** Of each decode step, milliseconds inside the attention layers. */
  decodeAttentionMs: number;
  peakRssBytes: number;
  /** Bytes of the packed checkpoint's weight files (mapped). */
  weightBytes: number;
  /** The KV caches' storage after the prompt, and the Mamba state. */
  kvBytes: number;
  stateBytes: number;
}

const DECODE_STEPS = 16;

function peakRssBytes(): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  return kb !== undefined ? Number(kb) * 1024 : process.memoryUsage().rss;
}

function weightFileBytes(dir: string): number {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

/** One length in this process: prompt in chunks, then decode. */
export async function measureLength(dir: string, backend: string, length: number): Promise<LongContextMeasurement> {
  await initBackend(backend);
  const granite = await fromPretrained(dir, { backend, contextLength: length + DECODE_STEPS });
  // Time spent inside attention layers: tfjs runs synchronously on cpu, wasm and native.
  let attentionMs = 0;
  const forward = CausalSelfAttention.prototype.forward;
  CausalSelfAttention.prototype.forward = function timed(this: CausalSelfAttention, ...args: Parameters<typeof forward>) {
    const t0 = performance.now();
    try {
      return forward.apply(this, args);
    } finally {
      attentionMs += performance.now() - t0;
    }
  };
  tf.tidy(() => void granite.model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32'), { logits: 'last' }).logits!.dataSync());
  attentionMs = 0;
  const cache = granite.makeCache(1, { length: length + DECODE_STEPS });
  const ids = Array.from({ length }, (_, i) => ((i * 7919) % 100000) + 1);
  const start = performance.now();
  for (let at = 0; at < length; at += DEFAULT_PREFILL_CHUNK) {
    const chunk = ids.slice(at, at + DEFAULT_PREFILL_CHUNK);
    const last = at + chunk.length >= length;
    tf.tidy(() => {
      const out = granite.model.forward(tf.tensor2d([chunk], undefined, 'int32'), { cache, logits: last ? 'last' : 'none' });
      out.logits?.dataSync();
    });
    // Progress on stderr every 8192 tokens: a 128K-token prompt takes over an hour here.
    if ((at + chunk.length) % 8192 === 0 && !last) {
      console.error(`  ${length} tokens: ${at + chunk.length} in ${((performance.now() - start) / 1000).toFixed(0)} s`);
    }
  }
  const prefillSeconds = (performance.now() - start) / 1000;
  const attentionSeconds = attentionMs / 1000;
  attentionMs = 0;
  const decodeStart = performance.now();
  for (let s = 0; s < DECODE_STEPS; s++) {
    tf.tidy(() => void granite.model.forward(tf.tensor2d([[5 + s]], undefined, 'int32'), { cache, logits: 'last' }).logits!.dataSync());
  }
  const decodeTokensPerSecond = DECODE_STEPS / ((performance.now() - decodeStart) / 1000);
  const decodeAttentionMs = attentionMs / DECODE_STEPS;
  CausalSelfAttention.prototype.forward = forward;
  let kvBytes = 0;
  let stateBytes = 0;
  for (const layer of cache.layers) {
    if ('convState' in layer) stateBytes += 4 * (layer.convState.size + layer.ssmState.size);
    else kvBytes += layer.byteSize;
  }
  cache.dispose();
  granite.dispose();
  return {
    length,
    prefillSeconds,
    attentionSeconds,
    decodeTokensPerSecond,
    decodeAttentionMs,
    peakRssBytes: peakRssBytes(),
    weightBytes: weightFileBytes(dir),
    kvBytes,
    stateBytes,
  };
}

function measureInChild(dir: string, backend: string, length: number): LongContextMeasurement {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, path.join(__dirname, 'run.ts'), '--long-one', dir, backend, String(length)],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 4 * 3600_000,
      maxBuffer: 1 << 20,
    },
  );
  if (child.status !== 0)
    throw new Error(`--long: ${length} tokens on ${backend} failed (exit ${child.status}${child.signal ? `, ${child.signal}` : ''})`);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as LongContextMeasurement;
}

/** `--long`: every length, each in its own process, and the table. */
export async function longContextBench(argValue: (name: string) => string | undefined): Promise<void> {
  const backend = argValue('--backend') ?? (isBackendAvailable('native') ? 'native' : 'wasm');
  const lengths = (argValue('--lengths') ?? '1024,8192,32768').split(',').map(Number);
  let dir = argValue('--model');
  let tmp: string | undefined;
  if (dir === undefined) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-long-'));
    dir = path.join(tmp, 'h-micro-q4_0');
    const t0 = performance.now();
    await writeRandomPackedCheckpoint(dir, preset('granite-4.0-h-micro'), { format: 'q4_0', seed: 1 });
    console.error(`wrote a random full H-Micro q4_0 checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const GiB = 2 ** 30;
  const rows: (string | number)[][] = [
    [
      'prompt tokens',
      'prefill s',
      'prefill ms/token',
      'attention share',
      'decode tok/s',
      'attention ms/step',
      'peak RSS GiB',
      'weights + KV + state GiB',
      'RSS − that GiB',
    ],
  ];
  const results: LongContextMeasurement[] = [];
  const theirs: LlamaCppLongMeasurement[] = [];
  const compare: (string | number)[][] = [
    [
      'prompt tokens',
      'prefill s (ours / llama.cpp)',
      'ratio',
      'decode tok/s (ours / llama.cpp)',
      'ratio',
      'peak RSS GiB (ours / llama.cpp)',
    ],
  ];
  try {
    let gguf: string | undefined;
    let llamaDir: string | undefined;
    if (process.argv.includes('--llamacpp')) {
      const found = llamaCppDir();
      if ('reason' in found) throw new Error(`--llamacpp: ${found.reason}`);
      llamaDir = found.dir;
      tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-long-'));
      gguf = path.join(tmp, `${path.basename(dir)}.gguf`);
      await exportGguf(dir, gguf, { format: mainPackedFormat(dir) });
    }
    for (const length of lengths) {
      const m = measureInChild(dir, backend, length);
      console.error(`${length} tokens: ${JSON.stringify(m)}`);
      results.push(m);
      const arithmetic = m.weightBytes + m.kvBytes + m.stateBytes;
      rows.push([
        length,
        m.prefillSeconds,
        (1000 * m.prefillSeconds) / length,
        m.attentionSeconds / m.prefillSeconds,
        m.decodeTokensPerSecond,
        m.decodeAttentionMs,
        m.peakRssBytes / GiB,
        arithmetic / GiB,
        (m.peakRssBytes - arithmetic) / GiB,
      ]);
      if (gguf !== undefined && llamaDir !== undefined) {
        const t = llamaCppLength(llamaDir, gguf, length);
        console.error(`${length} tokens, llama.cpp: ${JSON.stringify(t)}`);
        theirs.push(t);
        compare.push([
          length,
          `${m.prefillSeconds.toFixed(1)} / ${t.prefillSeconds.toFixed(1)}`,
          t.prefillSeconds / m.prefillSeconds,
          `${m.decodeTokensPerSecond.toFixed(2)} / ${t.decodeTokensPerSecond.toFixed(2)}`,
          m.decodeTokensPerSecond / t.decodeTokensPerSecond,
          `${(m.peakRssBytes / GiB).toFixed(2)} / ${t.peakRssGiB.toFixed(2)}`,
        ]);
      }
    }
  } finally {
    if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`${path.basename(dir)} on ${backend}, prompt in chunks of ${DEFAULT_PREFILL_CHUNK}, then ${DECODE_STEPS} decode steps`);
  console.log(formatTable(rows));
  if (theirs.length > 0) {
    console.log('Against llama.cpp (same weights as GGUF, 2 threads; ratios above 1 favour graniteflow):');
    console.log(formatTable(compare));
  }
  const out = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(
    path.join(out, 'granite-long.json'),
    JSON.stringify({ date: new Date().toISOString(), model: dir, backend, results, llamacpp: theirs }, null, 2),
  );
}
