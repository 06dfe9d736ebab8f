/**
 * Packed weights on the wasm backend at Granite 4.0 H-Micro projection shapes: y = x · Wᵀ with W as
 * float32 (tfjs matMul, XNNPACK, the weight stored [in, out] as Linear keeps it) vs packed bf16 /
 * q8_0 / q4_0 through PackedMatMul's WebAssembly SIMD kernels, vs the same kernel's JS loop
 * (SIMD off), and, for q8_0 / q4_0, the f32-widening SIMD kernels PackedMatMul does not use (the
 * measurement that chose the integer ones). 1 token (decode) and 64 tokens (a prefill chunk).
 * For 1 token each path is also timed on copies of its weight adding up to more than
 * `BENCH_COLD_MB` (default 640: above this machine's 480 MB L3), one copy per call in turn, as in a
 * whole model's decode where no weight is still in a cache; `BENCH_COLD_MB=0` skips that.
 * `npm run bench -w @graniteflow/core` → table on stdout, JSON in bench-results/core.json.
 * `BENCH_TOKENS`, `BENCH_SHAPES` (e.g. `8192x2048`) narrow it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  formatTable,
  initBackend,
  measure,
  packedMatMul,
  PackedTensor,
  quantizeRows,
  setSimdEnabled,
  simdCounters,
  simdKernels,
  type PackedFormat,
  type Timing,
} from '../src';
import { PACKED_MATVEC, type PackedMatvecExports } from '../src/packed/packed_matmul_simd';

/** H-Micro (hidden 2048, MLP 8192): the up projection [8192, 2048] and the down projection [2048, 8192]. */
const SHAPES = [
  { name: 'up', out: 8192, in: 2048 },
  { name: 'down', out: 2048, in: 8192 },
];
const list = (env: string | undefined, fallback: string) => (env ?? fallback).split(',').map((s) => s.trim());
const TOKENS = list(process.env.BENCH_TOKENS, '1,64').map(Number);
const ONLY = process.env.BENCH_SHAPES?.split(',');
const FORMATS: PackedFormat[] = ['q8_0', 'q4_0', 'bf16'];
const COLD_BYTES = Number(process.env.BENCH_COLD_MB ?? 640) * 1e6;

interface Row {
  shape: string;
  tokens: number;
  path: string;
  weightMB: number;
  medianMs: number;
  minMs: number;
  runs: number;
  /** float32 ms (the same cache state) / this ms: above 1 is faster than float32. */
  speedupVsF32: number;
  /** Weight bytes read per ms, for one token. */
  weightGBs: number | null;
}

const rows: Row[] = [];

function timingFor(slow: boolean): Parameters<typeof measure>[1] {
  return slow ? { warmup: 0, minRuns: 1, maxRuns: 1 } : { warmup: 2, minRuns: 7, minMs: 400, maxRuns: 40 };
}

/**
 * `run` timed on enough copies of a weight (`makeCopy`) that together they exceed COLD_BYTES, one
 * copy per call in turn: the first pass (untimed) lets XNNPACK pack each float32 copy once.
 */
async function timeBeyondCaches<T>(
  bytesPerCopy: number,
  makeCopy: () => T,
  run: (copy: T) => void,
  dispose: (copy: T) => void,
): Promise<Timing> {
  const copies = Array.from({ length: Math.ceil(COLD_BYTES / bytesPerCopy) }, makeCopy);
  let next = 0;
  try {
    return await measure(() => run(copies[next++ % copies.length]), {
      warmup: copies.length,
      minRuns: 2 * copies.length,
      maxRuns: 3 * copies.length,
      minMs: 0,
    });
  } finally {
    copies.forEach(dispose);
  }
}

/** What a backend kernel sees of the wasm backend, to hand the f32-widening kernels heap addresses. */
interface WasmBackendLike {
  typedArrayFromHeap(t: tf.Tensor): Float32Array | Int32Array;
}

/** Runs the q8_0 / q4_0 f32-widening kernel directly on the tensors' heap bytes. */
function widened(format: 'q8_0' | 'q4_0', x: tf.Tensor, w: PackedTensor, y: tf.Tensor, out: number, k: number): void {
  const backend = tf.backend() as unknown as WasmBackendLike;
  const [xv, wv, yv] = [backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(w.bytes), backend.typedArrayFromHeap(y)];
  const simd = simdKernels<PackedMatvecExports>(PACKED_MATVEC, [xv, wv, yv]);
  if (simd === null) throw new Error('the f32-widening comparison needs the wasm backend with WebAssembly SIMD');
  const run = format === 'q8_0' ? simd.exports.matmul_q8_0_f32 : simd.exports.matmul_q4_0_f32;
  run(wv.byteOffset, out, k, xv.byteOffset, x.shape[0], yv.byteOffset);
}

async function main(): Promise<void> {
  const started = performance.now();
  await initBackend('wasm');
  for (const shape of SHAPES.filter((s) => ONLY === undefined || ONLY.includes(`${s.out}x${s.in}`))) {
    const label = `${shape.name} ${shape.out}×${shape.in}`;
    const weight = tf.randomUniform([shape.out, shape.in], -0.05, 0.05, 'float32', 1);
    const f32Weight = tf.transpose(weight); // [in, out], as Linear holds it
    const values = weight.dataSync() as Float32Array;
    const packed = new Map(FORMATS.map((f) => [f, PackedTensor.fromFloats(f, [shape.out, shape.in], values)] as const));
    weight.dispose();
    for (const n of TOKENS) {
      const x = tf.randomNormal([n, shape.in], 0, 1, 'float32', 2 + n);
      const push = (path: string, bytes: number, t: Timing, f32Ms: number) => {
        rows.push({
          shape: label,
          tokens: n,
          path,
          weightMB: bytes / 1e6,
          medianMs: t.medianMs,
          minMs: t.minMs,
          runs: t.runs,
          speedupVsF32: f32Ms / t.medianMs,
          weightGBs: n === 1 ? bytes / t.medianMs / 1e6 : null,
        });
        console.error(`${label}  n=${n}  ${path}  ${t.medianMs.toFixed(3)} ms`);
      };
      const f32 = await measure(() => {
        const y = tf.matMul(x, f32Weight);
        y.dataSync();
        y.dispose();
      }, timingFor(false));
      push('float32 tfjs matMul (XNNPACK)', shape.out * shape.in * 4, f32, f32.medianMs);
      const cold = n === 1 && COLD_BYTES > 0;
      const f32Cold = cold
        ? await timeBeyondCaches(
            shape.out * shape.in * 4,
            () => tf.mul(f32Weight, 1),
            (w) => {
              const y = tf.matMul(x, w);
              y.dataSync();
              y.dispose();
            },
            (w) => w.dispose(),
          )
        : null;
      if (f32Cold !== null) push('float32 tfjs matMul (XNNPACK), beyond the caches', shape.out * shape.in * 4, f32Cold, f32Cold.medianMs);

      for (const format of FORMATS) {
        const w = packed.get(format)!;
        const runPacked = () => {
          const y = packedMatMul(x, w);
          y.dataSync();
          y.dispose();
        };
        const calls = simdCounters()[`PackedMatMul/${format}`] ?? 0;
        push(`${format} SIMD`, w.byteLength, await measure(runPacked, timingFor(false)), f32.medianMs);
        if ((simdCounters()[`PackedMatMul/${format}`] ?? 0) === calls)
          throw new Error(`PackedMatMul ${format} did not run its SIMD kernel`);
        if (f32Cold !== null) {
          const bytes = quantizeRows(format, values, shape.out, shape.in);
          const t = await timeBeyondCaches(
            w.byteLength,
            () => PackedTensor.fromBytes(format, [shape.out, shape.in], bytes),
            (copy) => {
              const y = packedMatMul(x, copy);
              y.dataSync();
              y.dispose();
            },
            (copy) => copy.dispose(),
          );
          push(`${format} SIMD, beyond the caches`, w.byteLength, t, f32Cold.medianMs);
        }
        if (format !== 'bf16') {
          const y = tf.zeros([n, shape.out]);
          push(
            `${format} SIMD, f32-widened weights (not used)`,
            w.byteLength,
            await measure(() => widened(format, x, w, y, shape.out, shape.in), timingFor(false)),
            f32.medianMs,
          );
          y.dispose();
        }
        setSimdEnabled(false);
        try {
          push(`${format} JS loop`, w.byteLength, await measure(runPacked, timingFor(n > 1)), f32.medianMs);
        } finally {
          setSimdEnabled(true);
        }
      }
      x.dispose();
    }
    f32Weight.dispose();
    for (const w of packed.values()) w.dispose();
  }

  console.log(
    formatTable([
      ['shape', 'tokens', 'path', 'weight MB', 'ms (median)', 'runs', 'vs f32 (×faster)', 'weight GB/s'],
      ...rows.map((r) => [r.shape, r.tokens, r.path, r.weightMB, r.medianMs, r.runs, r.speedupVsF32, r.weightGBs ?? '-']),
    ]),
  );
  const load = os.loadavg();
  console.log(
    `\nwasm backend, one thread, Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}. ` +
      `Load average at the end: ${load.map((l) => l.toFixed(2)).join(', ')}. Total ${((performance.now() - started) / 1000).toFixed(1)} s.`,
  );
  const dir = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'core.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, loadAverage: load, rows }, null, 2),
  );
  console.log(`Wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
