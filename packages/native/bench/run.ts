/**
 * Micro-benchmark of @graniteflow/native at Granite 4.0 H-Micro projection shapes (out 8192 x in
 * 2048 and out 2048 x in 8192): decode matmul (one activation row: GB/s of weights streamed), a
 * batched decode step (8 activation rows, as a server decoding 8 sequences at once: its time
 * against one row's) and 512-row prefill matmul (GFLOP/s), per format and dispatch level, with
 * every ratio against the scalar level (or the one-row call) measured in the same run. Decode cycles through enough copies of the weights
 * (>= 512 MB) that every call streams them from memory, not from cache. Each figure is the median
 * of several timed calls after a warm-up. Prints a table and writes bench-results/native.json.
 * Run with `npm run bench -w @graniteflow/native` (GRANITEFLOW_THREADS sets the threads).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FORMATS, LEVELS, requireNative, type Format, type Level } from '../src';

const native = requireNative();
const SHAPES: Array<[number, number]> = [
  [8192, 2048],
  [2048, 8192],
];
const PREFILL_ROWS = 512;
const BATCH_ROWS = 8;
const STREAM_BYTES = 512e6;
const levels = LEVELS.filter((l) => LEVELS.indexOf(l) <= LEVELS.indexOf(native.cpuLevel()));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median seconds of `repeats` calls after `warmup` calls. */
function time(fn: (i: number) => void, warmup: number, repeats: number): number {
  for (let i = 0; i < warmup; i++) fn(i);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    fn(warmup + i);
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return median(times);
}

function randomFloats(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a / 2 ** 31 - 1;
  }
  return out;
}

interface Row {
  format: Format;
  shape: string;
  level: Level;
  /** Weights as stored (row order) or regrouped by `interleave` (q8_0 / q4_0 at avx512). */
  layout: 'rows' | 'interleaved';
  decodeGBs: number;
  decodeMs: number;
  /** One call with BATCH_ROWS activation rows, weights streamed from memory as for decode. */
  batchMs: number;
  prefillGflops: number;
  prefillMs: number;
}

const rows: Row[] = [];
for (const [out, inF] of SHAPES) {
  const source = randomFloats(out * inF, out + inF);
  const x1 = randomFloats(inF, 1),
    x8 = randomFloats(BATCH_ROWS * inF, 3),
    xp = randomFloats(PREFILL_ROWS * inF, 2);
  const y1 = new Float32Array(out),
    y8 = new Float32Array(BATCH_ROWS * out),
    yp = new Float32Array(PREFILL_ROWS * out);
  for (const format of FORMATS) {
    const packed = new Uint8Array(native.packedByteLength(format, out, inF));
    native.quantize(format, source, out, inF, packed);
    const copies = [packed];
    while (copies.length * packed.length < STREAM_BYTES) copies.push(packed.slice());
    const runs: Array<[Level, 'rows' | 'interleaved']> = levels.map((l) => [l, 'rows']);
    if ((format === 'q8_0' || format === 'q4_0') && levels.includes('avx512')) runs.push(['avx512', 'interleaved']);
    for (const [level, layout] of runs) {
      native.setLevel(level);
      const interleaved = layout === 'interleaved';
      if (interleaved) for (const c of copies) native.interleave(format, c, out, inF, true);
      const decode = time(
        (i) => native.matmul(format, copies[i % copies.length], out, inF, x1, 1, y1, { interleaved }),
        copies.length,
        Math.max(2 * copies.length, 9),
      );
      const slow = level === 'scalar';
      const batch = time(
        (i) => native.matmul(format, copies[i % copies.length], out, inF, x8, BATCH_ROWS, y8, { interleaved }),
        slow ? 2 : copies.length,
        slow ? 5 : Math.max(2 * copies.length, 9),
      );
      const prefill = time(() => native.matmul(format, packed, out, inF, xp, PREFILL_ROWS, yp, { interleaved }), 1, slow ? 2 : 5);
      rows.push({
        format,
        shape: `${out}x${inF}`,
        level,
        layout,
        decodeGBs: packed.length / decode / 1e9,
        decodeMs: decode * 1e3,
        batchMs: batch * 1e3,
        prefillGflops: (2 * PREFILL_ROWS * out * inF) / prefill / 1e9,
        prefillMs: prefill * 1e3,
      });
      const r = rows[rows.length - 1];
      console.error(
        `${format} ${r.shape} ${level} ${layout}: decode ${r.decodeGBs.toFixed(1)} GB/s, prefill ${r.prefillGflops.toFixed(1)} GFLOP/s`,
      );
    }
    native.setLevel('avx512');
  }
}

const scalarOf = (r: Row) => rows.find((s) => s.format === r.format && s.shape === r.shape && s.level === 'scalar')!;
const header = [
  'format',
  'out x in',
  'level',
  'layout',
  'decode GB/s',
  'vs scalar',
  'decode ms',
  `${BATCH_ROWS} rows ms`,
  'vs 1 row',
  'prefill GFLOP/s',
  'vs scalar',
  'prefill ms',
];
const table = rows.map((r) => [
  r.format,
  r.shape,
  r.level,
  r.layout,
  r.decodeGBs.toFixed(1),
  `${(r.decodeGBs / scalarOf(r).decodeGBs).toFixed(1)}x`,
  r.decodeMs.toFixed(3),
  r.batchMs.toFixed(3),
  `${(r.batchMs / r.decodeMs).toFixed(2)}x`,
  r.prefillGflops.toFixed(1),
  `${(r.prefillGflops / scalarOf(r).prefillGflops).toFixed(1)}x`,
  r.prefillMs.toFixed(1),
]);
const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} CPUs, ${native.threads()} threads, best level ${native.cpuLevel()}, Node ${process.version}, load average ${os
  .loadavg()
  .map((l) => l.toFixed(2))
  .join(' ')}`;
console.log(`${new Date().toISOString().slice(0, 10)}: ${machine}\n`);
console.log([line(header), line(header.map(() => '---')), ...table.map(line)].join('\n'));
const outDir = path.join(__dirname, '..', 'bench-results');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'native.json'), JSON.stringify({ date: new Date().toISOString(), machine, rows }, null, 2));
