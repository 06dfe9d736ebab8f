/**
 * Sparse vs dense MoE on the wasm backend at Granite 4.0 H-Tiny and H-Small expert shapes.
 * `npm run bench -w @graniteflow/ops-moe` → table on stdout, JSON in bench-results/ops-moe.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { formatTable, initBackend, measure, simdKernels } from '@graniteflow/core';
import { resolveMoeExpertsPath, sparseMoe, sparseMoeReference, topKRouter, type MoeExpertsPath } from '../src';
import { EXPERT_GEMV, OPS_MOE_SIMD_MODULES, type ExpertGemvExports } from '../src/kernels/simd/expert_gemv_simd';

interface Shape {
  name: string;
  hidden: number;
  inter: number;
  experts: number;
  topK: number;
  /** Experts actually allocated (H-Small's 72 do not fit the 4 GiB heap next to the dense baseline). */
  benchExperts: number;
}

const SHAPES: Shape[] = [
  { name: 'H-Tiny', hidden: 1536, inter: 512, experts: 64, topK: 6, benchExperts: 64 },
  { name: 'H-Small', hidden: 4096, inter: 768, experts: 72, topK: 10, benchExperts: 24 },
];
const TOKENS = (process.env.BENCH_TOKENS ?? '1,16,512').split(',').map(Number);

/** Timing of every path: one warm-up run, then the median of at least 3 (up to 20 in 200 ms). */
const FAST_TIMING = { warmup: 1, minRuns: 3, minMs: 200, maxRuns: 20 };
/** Runs that take seconds: one warm-up, then the median of exactly 3. */
const SLOW_TIMING = { warmup: 1, minRuns: 3, maxRuns: 3, minMs: 0 };

/** Reads the k selected experts' weights once with a WebAssembly SIMD sum over the heap bytes. */
function readSelectedExperts(w1: tf.Tensor, w2: tf.Tensor, experts: number[]): number {
  const backend = tf.backend() as unknown as { typedArrayFromHeap(t: tf.Tensor): Float32Array };
  const a = backend.typedArrayFromHeap(w1);
  const b = backend.typedArrayFromHeap(w2);
  const simd = simdKernels<ExpertGemvExports>(EXPERT_GEMV, [a, b], OPS_MOE_SIMD_MODULES);
  if (simd === null) throw new Error('the read baseline needs the wasm backend with SIMD');
  const { sum } = simd.exports;
  const n1 = w1.size / w1.shape[0];
  const n2 = w2.size / w2.shape[0];
  let s = 0;
  for (const e of experts) {
    s += sum(a.byteOffset + e * n1 * 4, n1);
    s += sum(b.byteOffset + e * n2 * 4, n2);
  }
  return s;
}

/**
 * The dense block as fast as stock tfjs runs it: the same math as the reference, but with weights
 * laid out for plain matMuls (prepared once, outside the timing). tfjs-wasm multiplies by a
 * transposed operand several times slower, so this is the fair dense baseline.
 */
function denseMatMulFriendly(x: tf.Tensor, wrT: tf.Tensor, w1T: tf.Tensor, w2T: tf.Tensor, e: number, inter: number, k: number): tf.Tensor {
  return tf.tidy(() => {
    const n = x.shape[0];
    const { indices, weights } = topKRouter(tf.matMul(x, wrT), k); // wrT [H, E]
    const gate = tf.sum(tf.mul(tf.oneHot(indices, e), tf.expandDims(weights, 2)), 1); // [N, E]
    const a = tf.reshape(tf.matMul(x, w1T), [n, e, 2 * inter]); // w1T [H, E·2I]
    const [g, u] = tf.split(a, [inter, inter], 2);
    const act = tf.transpose(tf.mul(tf.mul(g, tf.sigmoid(g)), u), [1, 0, 2]); // [E, N, I]
    const y = tf.matMul(act, w2T); // w2T [E, I, H] → [E, N, H]
    return tf.sum(tf.mul(y, tf.expandDims(tf.transpose(gate), 2)), 0); // [N, H]
  });
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const rows: (string | number)[][] = [
    [
      'model',
      'E used',
      'tokens',
      "path ('auto')",
      'sparse ms',
      'other path',
      'other path ms',
      'dense ms',
      'dense/sparse',
      'fast dense ms',
      'fast dense/sparse',
      'ideal ms',
      'sparse/ideal',
      'read k ms',
      'sparse/read',
    ],
  ];
  const results: object[] = [];
  const notes: string[] = [];
  const only = process.env.BENCH_MODELS?.split(',');
  for (const s of SHAPES.filter((m) => only === undefined || only.includes(m.name))) {
    const e = s.benchExperts;
    const scale = s.experts / e; // dense time grows linearly with E
    if (scale !== 1) {
      notes.push(
        `${s.name}: ${e} of ${s.experts} experts allocated (72 × 37.7 MB = 2.7 GB of float32 experts do not fit the ` +
          `4 GiB wasm heap next to the dense baseline); dense and ideal are scaled ×${scale.toFixed(2)} to E = ${s.experts}.`,
      );
    }
    const wr = tf.randomNormal([e, s.hidden], 0, 1, 'float32', 1);
    const w1 = tf.randomUniform([e, 2 * s.inter, s.hidden], -0.03, 0.03, 'float32', 2);
    const w2 = tf.randomUniform([e, s.hidden, s.inter], -0.03, 0.03, 'float32', 3);
    const wrT = tf.transpose(wr);
    const w1T = tf.tidy(() => tf.transpose(tf.reshape(w1, [e * 2 * s.inter, s.hidden])));
    const w2T = tf.transpose(w2, [0, 2, 1]);
    for (const n of TOKENS) {
      const x = tf.randomNormal([n, s.hidden], 0, 1, 'float32', 4 + n);
      const run = (p: MoeExpertsPath) => () => {
        const { output, routerLogits } = sparseMoe(x, wr, w1, w2, s.topK, { path: p });
        output.dataSync();
        tf.dispose([output, routerLogits]);
      };
      // What 'auto' resolves to here is timed as 'auto' and named by the library, not by this file.
      const auto = resolveMoeExpertsPath('auto');
      const other: MoeExpertsPath = auto === 'gemv' ? 'grouped' : 'gemv';
      // Every path, baselines included, is warmed up once and timed at least 3 times (median); the
      // slow ones (256+ tokens) exactly 3.
      const timing = n >= 256 ? SLOW_TIMING : FAST_TIMING;
      const t0 = performance.now();
      const sparse = await measure(run('auto'), FAST_TIMING);
      // The other path at 512 tokens runs on H-Tiny only (≈45 s a run on H-Small).
      const skipAlt = n >= 256 && s.benchExperts !== s.experts;
      const alt = skipAlt ? null : await measure(run(other), timing);
      // H-Small's dense baseline at 512 tokens would take ~2 min a run: time 128 tokens, scale linearly.
      const denseTokens = n >= 256 && s.benchExperts !== s.experts ? 128 : n;
      const xDense = denseTokens === n ? x : tf.slice(x, [0, 0], [denseTokens, s.hidden]);
      if (denseTokens !== n)
        notes.push(
          `${s.name} ${n} tokens: dense timed on ${denseTokens} tokens and scaled ×${n / denseTokens} (dense cost is linear in tokens).`,
        );
      const dense = await measure(() => {
        const { output, routerLogits } = sparseMoeReference(xDense, wr, w1, w2, s.topK);
        output.dataSync();
        tf.dispose([output, routerLogits]);
      }, timing);
      const fastDense = await measure(() => {
        const out = denseMatMulFriendly(xDense, wrT, w1T, w2T, e, s.inter, s.topK);
        out.dataSync();
        out.dispose();
      }, timing);
      console.error(`  measured in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      if (xDense !== x) xDense.dispose();
      const denseMs = dense.medianMs * scale * (n / denseTokens);
      const fastDenseMs = fastDense.medianMs * scale * (n / denseTokens);
      const idealMs = (fastDenseMs * s.topK) / s.experts;
      let readMs = NaN;
      if (n === 1) {
        const selected = tf.tidy(() => topKRouter(tf.matMul(x, wr, false, true), s.topK).indices);
        const experts = Array.from(selected.dataSync());
        selected.dispose();
        readMs = (await measure(() => readSelectedExperts(w1, w2, experts), FAST_TIMING)).medianMs;
      }
      rows.push([
        s.name,
        e,
        n,
        auto,
        sparse.medianMs,
        other,
        alt ? alt.medianMs : 'skipped',
        denseMs,
        denseMs / sparse.medianMs,
        fastDenseMs,
        fastDenseMs / sparse.medianMs,
        idealMs,
        sparse.medianMs / idealMs,
        Number.isNaN(readMs) ? '-' : readMs,
        Number.isNaN(readMs) ? '-' : sparse.medianMs / readMs,
      ]);
      results.push({
        model: s.name,
        hidden: s.hidden,
        intermediate: s.inter,
        experts: s.experts,
        expertsAllocated: e,
        topK: s.topK,
        tokens: n,
        path: auto,
        sparseMs: sparse.medianMs,
        sparseRuns: sparse.runs,
        otherPath: alt ? { path: other, ms: alt.medianMs, runs: alt.runs } : null,
        denseMs,
        denseMeasuredMs: dense.medianMs,
        denseTokens,
        denseRuns: dense.runs,
        denseScale: scale,
        fastDenseRuns: fastDense.runs,
        fastDenseMs,
        idealMs,
        readSelectedExpertsMs: Number.isNaN(readMs) ? null : readMs,
        readBytes: n === 1 ? s.topK * 3 * s.hidden * s.inter * 4 : null,
      });
      x.dispose();
      console.error(rows[rows.length - 1].join('  '));
    }
    tf.dispose([wr, w1, w2, wrT, w1T, w2T]);
  }
  console.log(formatTable(rows));
  for (const note of notes) console.log(`note: ${note}`);
  console.log(
    'dense = the composed reference (oracle; multiplies by transposed checkpoint-layout weights, slow on tfjs-wasm); ' +
      'fast dense = the same math on weights pre-arranged for plain matMuls (the fair dense baseline); ' +
      "ideal = fast dense × k/E; read k = one WebAssembly SIMD pass over the k selected experts' weights (1 token).",
  );
  const dir = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'ops-moe.json'),
    JSON.stringify({ backend: 'wasm', date: new Date().toISOString(), notes, results }, null, 2),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
