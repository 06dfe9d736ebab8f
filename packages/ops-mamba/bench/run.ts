/**
 * Benchmark of @graniteflow/ops-mamba at Granite 4.0 H-Micro mixer shapes (Hm = 64, P = 64,
 * N = 128, G = 1, K = 4, hidden 2048), batch 1. Prints a table and writes
 * bench-results/ops-mamba.json. Run with `npm run bench -w @graniteflow/ops-mamba`.
 *
 * Every ratio is against the composed reference (chunked SSD from stock tfjs ops) measured in the
 * same process on the same backend as the row (a cpu row against the cpu reference); rows without
 * a reference measured on their backend have no ratio. Skipped cases say so.
 */
import * as fs from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { formatTable, initBackend, measure, type Timing } from '@graniteflow/core';
import * as tf from '@tensorflow/tfjs-core';
import {
  causalConv1dKernel,
  Mamba2Mixer,
  selectiveScanKernel,
  selectiveStateUpdateKernel,
  setSimdEnabled,
  type Mamba2Config,
  type SelectiveScanInputs,
} from '../src';

const MICRO: Mamba2Config = {
  hiddenSize: 2048,
  numHeads: 64,
  headDim: 64,
  stateSize: 128,
  nGroups: 1,
  convKernel: 4,
  chunkSize: 256,
  eps: 1e-5,
  convBias: true,
  projBias: false,
  timeStepLimit: [0, Infinity],
};
const { numHeads: Hm, headDim: P, stateSize: N, nGroups: G, convKernel: K } = MICRO;
const CONV_DIM = Hm * P + 2 * G * N;
const LENGTHS = [1, 128, 512, 2048];
const ATTRS = { dtMin: 0, dtMax: Infinity, chunkSize: MICRO.chunkSize };

/** Nominal scan FLOPs: 3 per state element for the update, 2 for the read-out. */
const scanFlops = (T: number) => 5 * T * Hm * P * N;

interface Row {
  op: string;
  T: number;
  impl: string;
  backend: string;
  ms: number | null;
  runs: number;
  vsReference: number | null;
  gflops: number | null;
  note?: string;
}
const rows: Row[] = [];

/**
 * Every case is warmed up once and timed at least 3 times (the median is reported); slow cases stop
 * at 3 runs, fast ones repeat for 400 ms.
 */
function budget(expectedMs: number) {
  if (expectedMs > 300) return { warmup: 1, minRuns: 3, maxRuns: 3, minMs: 0 };
  return { warmup: 2, minRuns: 5, maxRuns: 200, minMs: 400 };
}

async function time(fn: () => void, expectedMs: number): Promise<Timing> {
  return measure(fn, budget(expectedMs));
}

function scanInputs(T: number): SelectiveScanInputs {
  return {
    x: tf.randomNormal([1, T, Hm, P], 0, 1, 'float32', 1),
    dt: tf.randomNormal([1, T, Hm], 0, 1, 'float32', 2),
    A_log: tf.log(tf.range(1, Hm + 1)),
    B: tf.randomNormal([1, T, G, N], 0, 1, 'float32', 3),
    C: tf.randomNormal([1, T, G, N], 0, 1, 'float32', 4),
    D: tf.ones([Hm]),
    dt_bias: tf.ones([Hm]),
  };
}

function push(
  op: string,
  T: number,
  impl: string,
  backend: string,
  t: Timing | null,
  ref: number | null,
  flops: number | null,
  note?: string,
): number | null {
  const ms = t ? t.medianMs : null;
  rows.push({
    op,
    T,
    impl,
    backend,
    ms,
    runs: t ? t.runs : 0,
    vsReference: ms !== null && ref !== null ? ref / ms : null,
    gflops: ms !== null && flops !== null ? flops / ms / 1e6 : null,
    note,
  });
  return ms;
}

async function benchScan(): Promise<Record<number, { ref: number | null; simd: number | null }>> {
  const out: Record<number, { ref: number | null; simd: number | null }> = {};
  for (const T of LENGTHS) {
    await initBackend('wasm');
    const inputs = scanInputs(T);
    const run = (fn: () => tf.Tensor[]) => () => tf.dispose(fn());
    const ref = push(
      'selectiveScan',
      T,
      'reference (chunked SSD, Q=256)',
      'wasm',
      await time(
        run(() => selectiveScanKernel.reference(inputs, ATTRS)),
        T * 3,
      ),
      null,
      scanFlops(T),
    );
    rows[rows.length - 1].vsReference = 1;
    const simd = push(
      'selectiveScan',
      T,
      'fused, WebAssembly SIMD',
      'wasm',
      await time(
        run(() => selectiveScanKernel.fused(inputs, ATTRS)),
        T * 0.25,
      ),
      ref,
      scanFlops(T),
    );
    if (T <= 512) {
      setSimdEnabled(false);
      push(
        'selectiveScan',
        T,
        'fused, JS loop',
        'wasm',
        await time(
          run(() => selectiveScanKernel.fused(inputs, ATTRS)),
          T * 2,
        ),
        ref,
        scanFlops(T),
      );
      setSimdEnabled(true);
    } else {
      push('selectiveScan', T, 'fused, JS loop', 'wasm', null, null, null, 'skipped (~4 s per run)');
    }
    out[T] = { ref, simd };
    const wasmInputs = inputs;
    await initBackend('cpu');
    if (T <= 512) {
      const cpuInputs = Object.fromEntries(
        Object.entries(wasmInputs).map(([k, v]) => [k, tf.tensor(v!.dataSync(), v!.shape)]),
      ) as SelectiveScanInputs;
      // The cpu ratio is against the reference on cpu (pure-JS matmuls: measured up to T = 128 only).
      let cpuRef: number | null = null;
      if (T <= 128) {
        cpuRef = push(
          'selectiveScan',
          T,
          'reference (chunked SSD, Q=256)',
          'cpu',
          await time(
            run(() => selectiveScanKernel.reference(cpuInputs, ATTRS)),
            T * 40,
          ),
          null,
          scanFlops(T),
        );
        rows[rows.length - 1].vsReference = 1;
      }
      push(
        'selectiveScan',
        T,
        'fused, JS loop',
        'cpu',
        await time(
          run(() => selectiveScanKernel.fused(cpuInputs, ATTRS)),
          T * 2,
        ),
        cpuRef,
        scanFlops(T),
        cpuRef === null ? 'no cpu reference at this length (too slow)' : undefined,
      );
      tf.dispose(Object.values(cpuInputs));
    } else {
      push('selectiveScan', T, 'fused, JS loop', 'cpu', null, null, null, 'skipped (~4 s per run, same loop as wasm JS)');
    }
    await initBackend('wasm');
    tf.dispose(Object.values(wasmInputs));
  }
  return out;
}

async function benchConv(): Promise<Record<number, number | null>> {
  await initBackend('wasm');
  const out: Record<number, number | null> = {};
  const weight = tf.randomNormal([CONV_DIM, K], 0, 0.5, 'float32', 5);
  const bias = tf.randomNormal([CONV_DIM], 0, 0.1, 'float32', 6);
  const convState = tf.randomNormal([1, K - 1, CONV_DIM], 0, 1, 'float32', 8);
  for (const T of LENGTHS) {
    const x = tf.randomNormal([1, T, CONV_DIM], 0, 1, 'float32', 7);
    const inputs = { x, weight, bias, convState };
    const attrs = { activation: 'silu' as const };
    const flops = 2 * T * CONV_DIM * K;
    const ref = push(
      'causalConv1d',
      T,
      'reference (K shifted slices)',
      'wasm',
      await time(() => tf.dispose(causalConv1dKernel.reference(inputs, attrs)), 20),
      null,
      flops,
    );
    rows[rows.length - 1].vsReference = 1;
    out[T] = push(
      'causalConv1d',
      T,
      'fused, JS loop',
      'wasm',
      await time(() => tf.dispose(causalConv1dKernel.fused(inputs, attrs)), 5),
      ref,
      flops,
    );
    x.dispose();
  }
  tf.dispose([weight, bias, convState]);
  return out;
}

function randomMixer(): Mamba2Mixer {
  const m = new Mamba2Mixer(MICRO);
  const dict = new Map<string, tf.Tensor>();
  let seed = 100;
  for (const [name, p] of m.namedParameters()) {
    const shape = p.shape as number[];
    const fanIn = shape.length >= 2 ? shape[shape.length - 1] : 1;
    dict.set(
      name,
      name.endsWith('A_log') ? tf.log(tf.range(1, Hm + 1)) : tf.randomNormal(shape, 0, 1 / Math.sqrt(fanIn), 'float32', seed++),
    );
  }
  m.loadStateDict(dict);
  return m;
}

interface MixerTimes {
  forward: Record<number, number | null>;
  /** in_proj + out_proj alone as plain matMuls on Linear's [in, out] weights, at T = 512 */
  projections512: number;
}

async function benchMixer(): Promise<MixerTimes> {
  await initBackend('wasm');
  const m = randomMixer();
  const forward: Record<number, number | null> = {};
  const H = MICRO.hiddenSize;
  const projFlops = (T: number) => 2 * T * H * (2 * Hm * P + 2 * G * N + Hm) + 2 * T * Hm * P * H;
  for (const T of LENGTHS) {
    const u = tf.randomNormal([1, T, H], 0, 1, 'float32', 9);
    const t = await time(() => m.forward(u).dispose(), T * 30);
    forward[T] = push(
      'Mamba2Mixer.forward (no cache)',
      T,
      'fused kernels + core Linear',
      'wasm',
      t,
      null,
      projFlops(T) + scanFlops(T),
      `${(t.medianMs / T).toFixed(3)} ms/token`,
    );
    u.dispose();
  }
  // Decode: one token with a cache, projections included.
  const cache = m.makeCache(1);
  const u1 = tf.randomNormal([1, 1, H], 0, 1, 'float32', 10);
  const t = await time(() => m.forward(u1, { cache }).dispose(), 30);
  forward[-1] = push(
    'Mamba2Mixer.forward (decode, cache)',
    1,
    'fused kernels + core Linear',
    'wasm',
    t,
    null,
    null,
    `${t.medianMs.toFixed(3)} ms/token`,
  );
  cache.dispose();
  u1.dispose();
  // The two projections alone, as plain matMuls on the weights as Linear keeps them ([in, out]).
  const wIn = tf.clone(m.in_proj.weight.value);
  const wOut = tf.clone(m.out_proj.weight.value);
  const u512 = tf.randomNormal([512, H], 0, 1, 'float32', 19);
  const v512 = tf.randomNormal([512, Hm * P], 0, 1, 'float32', 20);
  const proj = await time(() => {
    tf.matMul(u512, wIn).dispose();
    tf.matMul(v512, wOut).dispose();
  }, 3000);
  push('in_proj + out_proj only', 512, 'tf.matMul on the [in, out] weights', 'wasm', proj, null, projFlops(512));
  tf.dispose([wIn, wOut, u512, v512]);
  m.dispose();
  return { forward, projections512: proj.medianMs };
}

async function benchDecodeStep(): Promise<number> {
  await initBackend('wasm');
  const xBC = tf.randomNormal([1, 1, CONV_DIM], 0, 1, 'float32', 11);
  const weight = tf.randomNormal([CONV_DIM, K], 0, 0.5, 'float32', 12);
  const bias = tf.zeros([CONV_DIM]);
  const convState = tf.randomNormal([1, K - 1, CONV_DIM], 0, 1, 'float32', 13);
  const step = {
    x: tf.randomNormal([1, Hm, P], 0, 1, 'float32', 14),
    dt: tf.randomNormal([1, Hm], 0, 1, 'float32', 15),
    A_log: tf.log(tf.range(1, Hm + 1)),
    B: tf.randomNormal([1, G, N], 0, 1, 'float32', 16),
    C: tf.randomNormal([1, G, N], 0, 1, 'float32', 17),
    D: tf.ones([Hm]),
    dt_bias: tf.ones([Hm]),
    state: tf.randomNormal([1, Hm, P, N], 0, 1, 'float32', 18),
  };
  const attrs = { dtMin: 0, dtMax: Infinity };
  const both = () => {
    tf.dispose(causalConv1dKernel.fused({ x: xBC, weight, bias, convState }, { activation: 'silu' }));
    tf.dispose(selectiveStateUpdateKernel.fused(step, attrs));
  };
  const refStep = await time(() => {
    tf.dispose(causalConv1dKernel.reference({ x: xBC, weight, bias, convState }, { activation: 'silu' }));
    tf.dispose(selectiveStateUpdateKernel.reference(step, attrs));
  }, 10);
  push('decode step (conv + selectiveStateUpdate)', 1, 'reference', 'wasm', refStep, null, scanFlops(1));
  rows[rows.length - 1].vsReference = 1;
  const fused = await time(both, 1);
  push('decode step (conv + selectiveStateUpdate)', 1, 'fused, WebAssembly SIMD', 'wasm', fused, refStep.medianMs, scanFlops(1));
  tf.dispose([xBC, weight, bias, convState, ...Object.values(step)]);
  return fused.medianMs;
}

async function main(): Promise<void> {
  const started = performance.now();
  const scan = await benchScan();
  const conv = await benchConv();
  const mixer = await benchMixer();
  const decodeMs = await benchDecodeStep();

  const table = [
    ['op', 'T', 'implementation', 'backend', 'ms', 'runs', 'x vs reference, same backend', 'GFLOP/s', 'note'],
    ...rows.map((r) => [
      r.op,
      r.T,
      r.impl,
      r.backend,
      r.ms === null ? '-' : r.ms,
      r.runs,
      r.vsReference === null ? '-' : r.vsReference,
      r.gflops === null ? '-' : r.gflops,
      r.note ?? '',
    ]),
  ];
  console.log(formatTable(table));

  const s512 = scan[512];
  const scanSpeedup = s512.ref !== null && s512.simd !== null ? s512.ref / s512.simd : null;
  const scanConv = s512.simd !== null && conv[512] !== null ? s512.simd + conv[512]! : null;
  const share = scanConv !== null && mixer.forward[512] !== null ? scanConv / mixer.forward[512]! : null;
  const targets = [
    {
      target: 'fused wasm scan >= 5x the composed reference on wasm at T=512',
      value: scanSpeedup,
      met: scanSpeedup !== null && scanSpeedup >= 5,
    },
    { target: 'scan + conv <= 25% of a whole mixer forward at T=512 (wasm)', value: share, met: share !== null && share <= 0.25 },
    { target: 'decode step (conv + scan, no projections) <= 1 ms per layer', value: decodeMs, met: decodeMs <= 1 },
  ];
  const decision =
    'The fused scan runs sequentially (one token at a time, state tile in SIMD registers). Measured in this run at T=512 on wasm: ' +
    `SIMD sequential ${fmt(s512.simd)} ms, JS sequential ${fmt(rows.find((r) => r.T === 512 && r.impl === 'fused, JS loop' && r.backend === 'wasm')?.ms ?? null)} ms, ` +
    `chunked SSD (XNNPACK matmuls) ${fmt(s512.ref)} ms. At N=128, P=64 the chunked form also does more arithmetic per token ` +
    '(Q·P + 2·P·N MACs per head vs 2.5·P·N), so chunking would only pay with a matmul faster than the register-tiled scan.';
  console.log('\nTargets');
  console.log(
    formatTable([['target', 'measured', 'met'], ...targets.map((t) => [t.target, t.value === null ? '-' : t.value, t.met ? 'yes' : 'NO'])]),
  );
  console.log(`\n${decision}`);
  console.log(
    `\nNominal scan FLOPs = 5·T·Hm·P·N. Machine load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(', ')}. Total benchmark time ${((performance.now() - started) / 1000).toFixed(1)} s.`,
  );

  const dir = path.join(__dirname, '..', 'bench-results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'ops-mamba.json');
  fs.writeFileSync(
    file,
    JSON.stringify(
      { date: new Date().toISOString(), node: process.version, shapes: MICRO, rows, targets, decision, loadAverage: loadavg() },
      null,
      2,
    ),
  );
  console.log(`Wrote ${path.relative(process.cwd(), file)}`);
}

function fmt(x: number | null): string {
  return x === null ? '-' : x.toFixed(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
