import * as tf from '@tensorflow/tfjs-core';
import {
  dequantizeRowsInto,
  isSimdEnabled,
  nativeAddon,
  PackedMatMul,
  PackedTensor,
  packedRowBytes,
  quantizeRows,
  setSimdEnabled,
  simdCounters,
  heapScratch,
  wasmHeap,
  type PackedFormat,
} from '@graniteflow/core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import {
  moeExperts,
  moeExpertsReference,
  SharedMLP,
  sparseMoe,
  sparseMoeReference,
  type SparseMoE,
  topKRouter,
  type MoeExpertsPath,
  type SparseMoEConfig,
} from '../src';
import { moePackedExpertsKernel, nativePackedExperts } from '../src/kernels/MoePackedExperts';
import { jsPackedMatMul, packedExpertsImpl, type PackedRowsMatMul } from '../src/kernels/MoePackedExperts_impl';
import { packedRows } from '../src/kernels/packed_rows';
import { makeMoe, randn } from './helpers';

const FORMATS: PackedFormat[] = ['bf16', 'q8_0', 'q4_0'];
const PATHS: MoeExpertsPath[] = ['auto', 'grouped', 'gemv'];
const TOL = { atol: 1e-4, rtol: 0 };

/** A SparseMoE with seeded random weights whose two expert weights are then packed. */
function packedMoe(config: SparseMoEConfig, formats: [PackedFormat, PackedFormat], seed: number): SparseMoE {
  const moe = makeMoe(config, seed);
  moe.input_linear.weight.pack(formats[0]);
  moe.output_linear.weight.pack(formats[1]);
  return moe;
}

/** The float32 weights the packed ones stand for: router, dequantized [E, 2I, H] and [E, H, I]. */
function dequantizedWeights(moe: SparseMoE): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return [
    moe.router.layer.weight.checkpointValue(),
    moe.input_linear.weight.packed!.dequantize(),
    moe.output_linear.weight.packed!.dequantize(),
  ];
}

/** The dense float reference (every expert on every token) on the dequantized weights, shaped like x. */
function denseOnDequantized(moe: SparseMoE, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const [wr, w1, w2] = dequantizedWeights(moe);
    const flat = tf.reshape(x, [-1, moe.config.hiddenSize]);
    return tf.reshape(sparseMoeReference(flat, wr, w1, w2, moe.config.topK).output, x.shape);
  });
}

/** Backends on which the fused JavaScript body runs (native has a kernel of its own). */
const runsFusedBody = (backend: string) => backend === 'cpu' || backend === 'wasm';

/**
 * What the fused kernels of a backend do to the activations before multiplying them by a weight in
 * `format`: nothing (float32 math), int16 per 32-block (core's WebAssembly SIMD kernels on wasm) or
 * q8_0 (the native addon, as llama.cpp). bf16 weights always meet float32 activations.
 */
type Rounding = 'none' | 'int16' | 'q8_0';
function fusedRounding(backend: string, format: PackedFormat): Rounding {
  if (format === 'bf16') return 'none';
  if (backend === 'wasm') return isSimdEnabled() ? 'int16' : 'none';
  return backend === 'native' ? 'q8_0' : 'none';
}

/** Rows of `cols` activations as the kernels see them after `rounding`. */
function roundActivations(v: Float32Array, cols: number, rounding: Rounding): Float32Array {
  if (rounding === 'none') return v;
  const rows = v.length / cols;
  const out = new Float32Array(v.length);
  if (rounding === 'q8_0') {
    dequantizeRowsInto('q8_0', quantizeRows('q8_0', v, rows, cols), cols, 0, rows, out);
    return out;
  }
  for (let b = 0; b < v.length; b += 32) {
    let amax = 0;
    for (let j = b; j < b + 32; j++) amax = Math.max(amax, Math.abs(v[j]));
    const d = Math.fround(amax / 32767);
    const id = d === 0 ? 0 : Math.fround(1 / d);
    for (let j = b; j < b + 32; j++) {
      const t = Math.fround(v[j] * id);
      const q = Math.abs(t % 1) === 0.5 ? 2 * Math.round(t / 2) : Math.round(t); // ties to even
      out[j] = q * d;
    }
  }
  return out;
}

/** float64 `x [n, cols] · Wᵀ` for W [rows, cols] (starting at element `wOffset` of `w`). */
function matMulT(x: Float32Array, w: Float32Array, n: number, rows: number, cols: number, wOffset = 0): Float64Array {
  const y = new Float64Array(n * rows);
  for (let t = 0; t < n; t++) {
    for (let o = 0; o < rows; o++) {
      let acc = 0;
      for (let c = 0; c < cols; c++) acc += x[t * cols + c] * w[wOffset + o * cols + c];
      y[t * rows + o] = acc;
    }
  }
  return y;
}

const silu = (g: number) => g / (1 + Math.exp(-g));

/** SwiGLU of gate/up rows [n, 2I] → float32 [n, I]. */
function swigluRows(a: Float64Array, n: number, i: number): Float32Array {
  return Float32Array.from({ length: n * i }, (_, p) => {
    const [t, c] = [Math.floor(p / i), p % i];
    return silu(a[t * 2 * i + c]) * a[t * 2 * i + i + c];
  });
}

/**
 * The routed experts from float32 weights, slot by slot in float64, with each product's
 * activations rounded as a backend's kernels round them: the oracle of the fused paths. They agree
 * with it to a few float32 ulps (at most 7e-7 on these cases, on every backend).
 */
function expertsOracle(
  x: tf.Tensor,
  w1: tf.Tensor,
  w2: tf.Tensor,
  indices: tf.Tensor,
  weights: tf.Tensor,
  [roundIn, roundOut]: [Rounding, Rounding],
): Float32Array {
  const [n, h] = x.shape;
  const [, twoI] = w1.shape;
  const i = twoI / 2;
  const k = indices.shape[1] as number;
  const [xs, a1, a2, ids, gs] = [x, w1, w2, indices, weights].map((t) => t.dataSync());
  const xr = roundActivations(xs as Float32Array, h, roundIn);
  const y = new Float32Array(n * h);
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      const a = matMulT(xr.subarray(t * h, (t + 1) * h), a1 as Float32Array, 1, twoI, h, e * twoI * h);
      const act = roundActivations(swigluRows(a, 1, i), i, roundOut);
      const out = matMulT(act, a2 as Float32Array, 1, h, i, e * h * i);
      for (let c = 0; c < h; c++) y[t * h + c] += gs[t * k + j] * out[c];
    }
  }
  return y;
}

/** How far activation rounding may move the result from float32 math on these shapes. */
const roundingTol = (rounding: Rounding[]) => ({
  atol: rounding.includes('q8_0') ? 0.1 : rounding.includes('int16') ? 1e-3 : 1e-4,
  rtol: 0,
});

/** Calls of the native addon's kernel that runs experts in `format` so far (its one-call
 * moeExperts when both weights are q8_0 / q4_0, its matmul otherwise), summed over instruction-set levels. */
function nativeMatmulCalls(format: PackedFormat, other: PackedFormat): number {
  const counts = (nativeAddon()?.counters() ?? {}) as Record<string, number | Record<string, number>>;
  const c = counts[format === 'bf16' || other === 'bf16' ? `matmul.${format}` : 'moeExperts'] ?? 0;
  return typeof c === 'number' ? c : Object.values(c).reduce((sum, v) => sum + v, 0);
}

/** A float64 `y = x · Wᵀ` over unpacked rows: an addon stand-in independent of the kernel's own matmul. */
const oracleMatMul: PackedRowsMatMul = (format, w, outFeatures, inFeatures, x, nRows, y) => {
  const row = new Float32Array(inFeatures);
  for (let o = 0; o < outFeatures; o++) {
    dequantizeRowsInto(format, w, inFeatures, o, 1, row);
    for (let r = 0; r < nRows; r++) {
      let acc = 0;
      for (let c = 0; c < inFeatures; c++) acc += row[c] * x[r * inFeatures + c];
      y[r * outFeatures + o] = acc;
    }
  }
};

describe("packed rows (the kernels' row reader)", () => {
  /** A seeded uniform generator (mulberry32). */
  const uniform = (seed: number) => {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  };
  it.each([
    ['bf16', 7, 13],
    ['bf16', 3, 1536],
    ['q8_0', 5, 32],
    ['q8_0', 3, 1536],
    ['q4_0', 9, 64],
    ['q4_0', 2, 512],
  ] as const)("%s, %i rows of %i: dot and unpack equal core's dequantize then float math", (format, rows, cols) => {
    const next = uniform(rows * cols);
    // Magnitudes over several decades, so block scales differ from block to block.
    const values = Float32Array.from({ length: rows * cols }, () => (next() * 2 - 1) * 10 ** Math.floor(next() * 4 - 2));
    // Not word-aligned, inside a larger buffer (as an expert's rows are inside the stacked weight).
    const packed = quantizeRows(format, values, rows, cols);
    const buffer = new Uint8Array(packed.length + 12);
    buffer.set(packed, 6);
    const bytes = buffer.subarray(6, 6 + packed.length);
    const x = Float32Array.from({ length: 2 * cols }, () => next() * 2 - 1);
    const reader = packedRows(format, bytes, cols);
    const expected = new Float32Array(cols);
    const got = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      dequantizeRowsInto(format, packed, cols, r, 1, expected);
      reader.unpack(r, got);
      expect(Array.from(got)).toEqual(Array.from(expected));
      let dot = 0;
      let scale = 0;
      for (let c = 0; c < cols; c++) {
        dot += expected[c] * x[cols + c];
        scale += Math.abs(expected[c] * x[cols + c]);
      }
      expect(Math.abs(reader.dot(r, x, cols) - dot)).toBeLessThanOrEqual(1e-6 * scale);
    }
  });
});

describeBackends('packed MoE experts', (backend) => {
  // A failed expectation must not leave a spy counting into the next test.
  afterEach(() => jest.restoreAllMocks());

  const cases: [string, SparseMoEConfig, number[], [PackedFormat, PackedFormat][]][] = [
    // bf16 has no blocks: ragged H and I.
    ['ragged H 12, I 6, k 2', { hiddenSize: 12, intermediateSize: 6, numExperts: 5, topK: 2 }, [7, 12], [['bf16', 'bf16']]],
    ['k = 1, many tokens', { hiddenSize: 64, intermediateSize: 32, numExperts: 6, topK: 1 }, [9, 64], FORMATS.map((f) => [f, f])],
    ['k = E', { hiddenSize: 32, intermediateSize: 32, numExperts: 4, topK: 4 }, [5, 32], FORMATS.map((f) => [f, f])],
    ['one token (decode)', { hiddenSize: 96, intermediateSize: 64, numExperts: 8, topK: 2 }, [1, 96], FORMATS.map((f) => [f, f])],
    [
      'leading dims [2, 3]',
      { hiddenSize: 32, intermediateSize: 32, numExperts: 6, topK: 2 },
      [2, 3, 32],
      [
        ['q4_0', 'q8_0'],
        ['q8_0', 'bf16'],
      ],
    ],
    // Expert e's bytes start inside a word: 13 q4_0 rows of 18 bytes, 13 × 5 bf16 weights.
    [
      'experts not word-aligned (H 13, I 32)',
      { hiddenSize: 13, intermediateSize: 32, numExperts: 3, topK: 2 },
      [6, 13],
      [['bf16', 'q4_0']],
    ],
    ['experts not word-aligned (H 13, I 5)', { hiddenSize: 13, intermediateSize: 5, numExperts: 3, topK: 2 }, [6, 13], [['bf16', 'bf16']]],
    // 70 tokens on each of 2 experts: more than one group of rows per expert in the fused body.
    ['70 tokens, every expert busy', { hiddenSize: 32, intermediateSize: 32, numExperts: 2, topK: 2 }, [70, 32], [['q4_0', 'q4_0']]],
  ];
  for (const [label, config, shape, formatPairs] of cases) {
    it.each(formatPairs)(`${label}: %s/%s experts equal the float math on the dequantized weights`, (f1, f2) => {
      const compute = jest.spyOn(moePackedExpertsKernel.definition.fused!, 'compute');
      const moe = packedMoe(config, [f1, f2], 5 + config.numExperts);
      expect(moe.input_linear.weight.dtype).toBe(f1);
      expect(moe.router.layer.weight.dtype).toBe('f32');
      const x = randn(shape, 6);
      const flat = tf.reshape(x, [-1, config.hiddenSize]);
      const [wr, w1, w2] = dequantizedWeights(moe);
      const { indices, weights } = topKRouter(tf.matMul(flat, wr, false, true), config.topK);
      const dense = denseOnDequantized(moe, x);
      const rounding = [fusedRounding(backend, f1), fusedRounding(backend, f2)] as [Rounding, Rounding];
      const oracle = expertsOracle(flat, w1, w2, indices, weights, rounding);
      const simdBefore = simdCounters()[`MoePackedExperts/${f1}`] ?? 0;
      const nativeBefore = nativeMatmulCalls(f1, f2);
      for (const path of PATHS) {
        const y = moe.forward(x, { path });
        expect(y.shape).toEqual(shape);
        if (path === 'grouped') {
          // The composed reference: float32 math on every backend.
          expectClose(y, dense, TOL, `${path} path vs the dense reference`);
        } else {
          expectClose(y.dataSync(), oracle, TOL, `${path} path vs the oracle (${rounding})`);
          expectClose(y, dense, roundingTol(rounding), `${path} path vs the dense reference`);
        }
        y.dispose();
      }
      // 'auto' and 'gemv' run the fused body here; 'grouped' is the composed reference.
      expect(compute).toHaveBeenCalledTimes(runsFusedBody(backend) ? 2 : 0);
      if (backend === 'wasm') {
        // In place: the packed bytes the body read are views of the wasm heap, not copies.
        expect(compute.mock.calls[0][0].inputLinear.buffer).toBe(wasmHeap()!.memory.buffer);
        if (isSimdEnabled()) expect(simdCounters()[`MoePackedExperts/${f1}`]).toBeGreaterThan(simdBefore);
      }
      if (backend === 'native') expect(nativeMatmulCalls(f1, f2)).toBeGreaterThan(nativeBefore);
      tf.dispose([x, flat, wr, w1, w2, indices, weights, dense]);
      moe.dispose();
    });
  }

  (backend === 'wasm' ? it : it.skip)("wasm: the groups run through core's SIMD kernels, on heap scratch holding garbage", () => {
    const moe = packedMoe({ hiddenSize: 64, intermediateSize: 32, numExperts: 4, topK: 2 }, ['q4_0', 'bf16'], 61);
    const x = randn([40, 64], 62);
    const [wr, w1, w2] = dequantizedWeights(moe);
    const { indices, weights } = topKRouter(tf.matMul(x, wr, false, true), 2);
    const oracle = expertsOracle(x, w1, w2, indices, weights, ['int16', 'none']);
    moe.forward(x).dispose(); // reserves the heap scratch
    heapScratch(wasmHeap()!)!.fill(NaN);
    const before = [simdCounters()['MoePackedExperts/q4_0'] ?? 0, simdCounters()['MoePackedExperts/bf16'] ?? 0];
    const y = moe.forward(x);
    expectClose(y.dataSync(), oracle, TOL);
    // One call per non-empty expert and weight: all 4 experts are busy with 40 tokens.
    expect(simdCounters()['MoePackedExperts/q4_0']).toBe(before[0] + 4);
    expect(simdCounters()['MoePackedExperts/bf16']).toBe(before[1] + 4);
    tf.dispose([x, wr, w1, w2, indices, weights, y]);
    moe.dispose();
  });

  (backend === 'wasm' ? it : it.skip)('wasm with SIMD switched off: the JavaScript body over the heap, float32 activations', () => {
    const moe = packedMoe({ hiddenSize: 64, intermediateSize: 32, numExperts: 4, topK: 2 }, ['q8_0', 'q4_0'], 71);
    const x = randn([9, 64], 72);
    const [wr, w1, w2] = dequantizedWeights(moe);
    const { indices, weights } = topKRouter(tf.matMul(x, wr, false, true), 2);
    const oracle = expertsOracle(x, w1, w2, indices, weights, ['none', 'none']);
    const before = simdCounters()['MoePackedExperts/q8_0'] ?? 0;
    const previous = setSimdEnabled(false);
    try {
      const y = moe.forward(x);
      expectClose(y.dataSync(), oracle, TOL);
      y.dispose();
    } finally {
      setSimdEnabled(previous);
    }
    expect(simdCounters()['MoePackedExperts/q8_0'] ?? 0).toBe(before);
    tf.dispose([x, wr, w1, w2, indices, weights]);
    moe.dispose();
  });

  it('an expert that gets no token is never read: its bytes may be garbage', () => {
    const config = { hiddenSize: 32, intermediateSize: 32, numExperts: 4, topK: 1 };
    const moe = makeMoe(config, 3);
    // Router: expert 2 for positive x, nobody else ever.
    moe.router.layer.weight.assign(tf.tidy(() => tf.concat([tf.zeros([2, 32]), tf.ones([1, 32]), tf.fill([1, 32], -1)])));
    // Every q8_0 scale of experts 0, 1 and 3 set to an f16 NaN: any use of them poisons the output.
    for (const [linear, rows, cols] of [
      [moe.input_linear, 64, 32],
      [moe.output_linear, 32, 32],
    ] as const) {
      const floats = linear.weight.checkpointValue();
      const bytes = quantizeRows('q8_0', floats.dataSync() as Float32Array, 4 * rows, cols);
      floats.dispose();
      const expertBytes = rows * packedRowBytes('q8_0', cols);
      for (const ex of [0, 1, 3]) {
        for (let at = ex * expertBytes; at < (ex + 1) * expertBytes; at += 34) bytes.set([0x00, 0x7e], at);
      }
      linear.weight.assignPacked(PackedTensor.fromBytes('q8_0', [4, rows, cols], bytes));
    }
    const x = tf.abs(randn([5, 32], 4));
    const [wr, w1, w2] = dequantizedWeights(moe);
    const { indices, weights } = topKRouter(tf.matMul(x, wr, false, true), 1);
    expect(Array.from(indices.dataSync())).toEqual([2, 2, 2, 2, 2]);
    expect(Number.isNaN(w1.dataSync()[0])).toBe(true);
    // The per-slot references gather only the routed experts, so they stay finite too.
    const expected = moeExpertsReference(x, w1, w2, indices, weights);
    const rounding = fusedRounding(backend, 'q8_0');
    const oracle = expertsOracle(x, w1, w2, indices, weights, [rounding, rounding]);
    for (const path of PATHS) {
      const y = moe.forward(x, { path });
      if (path === 'grouped') expectClose(y, expected, TOL, path);
      else expectClose(y.dataSync(), oracle, TOL, path);
      y.dispose();
    }
    tf.dispose([x, wr, w1, w2, indices, weights, expected]);
    moe.dispose();
  });

  it.each(['auto', 'grouped'] as const)(
    'gradient w.r.t. the input and the router (%s path) equals autodiff of the dense reference on dequantized weights',
    (path) => {
      const config = { hiddenSize: 32, intermediateSize: 32, numExperts: 5, topK: 2 };
      const moe = packedMoe(config, ['q4_0', 'q8_0'], 21);
      const x = randn([2, 3, 32], 22);
      const proj = randn([2, 3, 32], 23);
      const [wr, w1, w2] = dequantizedWeights(moe);
      const packed1 = moe.input_linear.weight.packed!;
      const packed2 = moe.output_linear.weight.packed!;
      const dense = (xx: tf.Tensor, r: tf.Tensor) =>
        tf.sum(tf.mul(tf.reshape(sparseMoeReference(tf.reshape(xx, [6, 32]), r, w1, w2, 2).output, [2, 3, 32]), proj));
      const sparse = (xx: tf.Tensor, r: tf.Tensor) => tf.sum(tf.mul(sparseMoe(xx, r, packed1, packed2, 2, { path }).output, proj));
      const expected = tf.grads(dense)([x, wr]);
      const got = tf.grads(sparse)([x, wr]);
      expectClose(got[0], expected[0], { atol: 1e-4, rtol: 1e-4 }, 'dx');
      expectClose(got[1], expected[1], { atol: 1e-4, rtol: 1e-4 }, 'drouter');
      // The module too: only the input is differentiated, the packed experts stay frozen.
      const dxModule = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(moe.forward(xx, { path }), proj)))(x);
      expectClose(dxModule, expected[0], { atol: 1e-4, rtol: 1e-4 }, 'module dx');
      tf.dispose([x, proj, wr, w1, w2, ...expected, ...got, dxModule]);
      moe.dispose();
    },
  );

  it('the fused body reads only the routed experts, as subarrays of the packed bytes', () => {
    const [n, h, i, k, e] = [6, 32, 32, 2, 5];
    const floats = (shape: number[], seed: number) => tf.tidy(() => randn(shape, seed).dataSync() as Float32Array);
    const w1 = quantizeRows('q4_0', floats([e * 2 * i, h], 1), e * 2 * i, h);
    const w2 = quantizeRows('q4_0', floats([e * h, i], 2), e * h, i);
    const indices = Int32Array.from([0, 3, 3, 0, 0, 3, 3, 4, 0, 4, 4, 3]); // expert 1 and 2 idle
    const weights = Float32Array.from({ length: n * k }, (_, s) => 0.25 + s / 24);
    const x = floats([n, h], 3);
    const reads: { expert: number; rows: number; tokens: number; sameBuffer: boolean }[] = [];
    const recording: PackedRowsMatMul = (format, w, outF, inF, xs, nRows, ys) => {
      const base = outF === 2 * i ? w1 : w2;
      const expertBytes = outF * packedRowBytes(format, inF);
      expect(w.length).toBe(expertBytes);
      reads.push({
        expert: (w.byteOffset - base.byteOffset) / expertBytes,
        rows: outF,
        tokens: nRows,
        sameBuffer: w.buffer === base.buffer,
      });
      jsPackedMatMul(format, w, outF, inF, xs, nRows, ys);
    };
    const y = new Float32Array(n * h);
    const formats = { inputFormat: 'q4_0', outputFormat: 'q4_0' } as const;
    // Groups of at most 3 tokens: expert 0 (4 tokens) and 3 (5) take two groups each, 4 (3) one.
    packedExpertsImpl(x, w1, w2, indices, weights, y, { n, h, i, k, e }, formats, recording, 3);
    expect(reads.map((r) => [r.expert, r.rows, r.tokens])).toEqual([
      [0, 64, 3],
      [0, 32, 3],
      [0, 64, 1],
      [0, 32, 1],
      [3, 64, 3],
      [3, 32, 3],
      [3, 64, 2],
      [3, 32, 2],
      [4, 64, 3],
      [4, 32, 3],
    ]);
    expect(reads.every((r) => r.sameBuffer)).toBe(true);
    // The same sums as one ungrouped pass with an independent matmul.
    const yOracle = new Float32Array(n * h);
    packedExpertsImpl(x, w1, w2, indices, weights, yOracle, { n, h, i, k, e }, formats, oracleMatMul);
    expectClose(y, yOracle, { atol: 1e-5 });
  });

  it.each(FORMATS)('the native backend body: one addon.matmul per routed expert and weight, on the bytes in place (%s)', (format) => {
    const config = { hiddenSize: 64, intermediateSize: 32, numExperts: 6, topK: 2 };
    const moe = packedMoe(config, [format, format], 31);
    const x = randn([4, 64], 32);
    const [wr, w1, w2] = dequantizedWeights(moe);
    const { indices, weights } = topKRouter(tf.matMul(x, wr, false, true), 2);
    const storage = (p: PackedTensor) => {
      const words = new Int32Array(Math.ceil(p.byteLength / 4));
      new Uint8Array(words.buffer).set(p.readBytes());
      return words;
    };
    const s1 = storage(moe.input_linear.weight.packed!);
    const s2 = storage(moe.output_linear.weight.packed!);
    const calls: { sameBuffer: boolean; nRows: number }[] = [];
    const addon = {
      matmul: (...args: Parameters<PackedRowsMatMul>) => {
        const [f, w, , , , nRows] = args;
        expect(f).toBe(format);
        calls.push({ sameBuffer: w.buffer === s1.buffer || w.buffer === s2.buffer, nRows });
        oracleMatMul(...args);
      },
    };
    const out = nativePackedExperts(
      addon,
      {
        x: { values: x.dataSync() as Float32Array, shape: [4, 64] },
        inputLinear: { values: s1, shape: [s1.length] },
        outputLinear: { values: s2, shape: [s2.length] },
        indices: { values: indices.dataSync() as Int32Array, shape: [4, 2] },
        weights: { values: weights.dataSync() as Float32Array, shape: [4, 2] },
      },
      { inputFormat: format, outputFormat: format, numExperts: 6, hiddenSize: 64, intermediateSize: 32 },
    );
    const routed = new Set(indices.dataSync());
    expect(calls.length).toBe(2 * routed.size);
    expect(calls.every((c) => c.sameBuffer)).toBe(true);
    expect(calls.reduce((sum, c) => sum + c.nRows, 0)).toBe(2 * 4 * 2); // every slot once per weight
    expect(out.shape).toEqual([4, 64]);
    const expected = moeExpertsReference(x, w1, w2, indices, weights);
    expectClose(out.values, expected, TOL);
    tf.dispose([x, wr, w1, w2, indices, weights, expected]);
    moe.dispose();
  });

  it.each(FORMATS)('SharedMLP with packed %s Linears equals its float math on the dequantized weights', (format) => {
    const compute = jest.spyOn(PackedMatMul.definition.fused!, 'compute');
    const mlp = new SharedMLP({ hiddenSize: 64, sharedIntermediateSize: 96 });
    mlp.loadStateDict({ 'input_linear.weight': randn([192, 64], 1, 0.125), 'output_linear.weight': randn([64, 96], 2, 0.1) });
    mlp.input_linear.weight.pack(format);
    mlp.output_linear.weight.pack(format);
    const float = new SharedMLP({ hiddenSize: 64, sharedIntermediateSize: 96 });
    float.loadStateDict({
      'input_linear.weight': mlp.input_linear.weight.packed!.dequantize(),
      'output_linear.weight': mlp.output_linear.weight.packed!.dequantize(),
    });
    const x = randn([2, 3, 64], 3);
    const y = mlp.forward(x);
    const expected = float.forward(x);
    // The oracle: the same float math with the activations of both products rounded as core's
    // packed matmul rounds them on this backend.
    const rounding = fusedRounding(backend, format);
    const [w1, w2] = [float.input_linear.weight.checkpointValue(), float.output_linear.weight.checkpointValue()];
    const a = matMulT(roundActivations(x.dataSync() as Float32Array, 64, rounding), w1.dataSync() as Float32Array, 6, 192, 64);
    const act = roundActivations(swigluRows(a, 6, 96), 96, rounding);
    const oracle = Float32Array.from(matMulT(act, w2.dataSync() as Float32Array, 6, 64, 96));
    expectClose(y.dataSync(), oracle, TOL, `vs the oracle (${rounding})`);
    expectClose(y, expected, roundingTol([rounding]), 'vs the float SharedMLP');
    expect(compute).toHaveBeenCalledTimes(runsFusedBody(backend) ? 2 : 0);
    tf.dispose([x, y, expected, w1, w2]);
    mlp.dispose();
    float.dispose();
  });

  it('errors: packed with float experts, out-of-range expert ids', () => {
    const moe = packedMoe({ hiddenSize: 32, intermediateSize: 32, numExperts: 4, topK: 1 }, ['q8_0', 'q8_0'], 41);
    const x = tf.zeros([2, 32]);
    const floats = tf.zeros([4, 32, 32]);
    const idx = tf.tensor2d([[1], [7]], [2, 1], 'int32');
    const w = tf.ones([2, 1]);
    expect(() => moeExperts(x, moe.input_linear.weight.packed!, floats, idx, w)).toThrow(
      /moeExperts: inputLinear \[4,64,32\] is packed as q8_0 but outputLinear \[4,32,32\] is a float32 tensor: the experts need both weights packed \(in any formats\) or both float32\./,
    );
    const wrongShape = PackedTensor.fromFloats('q8_0', [4, 32, 64], new Float32Array(4 * 32 * 64));
    expect(() => moeExperts(x, moe.input_linear.weight.packed!, wrongShape, idx, w)).toThrow(
      /outputLinear \[4,32,64\] does not match inputLinear \[4,64,32\]: expected outputLinear \[E, H, I\] with size 32 on axis 2, got 64/,
    );
    wrongShape.dispose();
    if (runsFusedBody(backend)) {
      expect(() => moeExperts(x, moe.input_linear.weight.packed!, moe.output_linear.weight.packed!, idx, w)).toThrow(
        /MoePackedExperts: indices\[1, 0\] is 7, outside the 4 experts \[0, 4\)/,
      );
    }
    moe.output_linear.weight.unpack();
    expect(() => moe.forward(x)).toThrow(
      /SparseMoE: input_linear\.weight is held as q8_0 but output_linear\.weight as f32: the experts run with both weights packed \(in any formats\) or both float32; pack output_linear\.weight too, or unpack input_linear\.weight\./,
    );
    tf.dispose([x, floats, idx, w]);
    moe.dispose();
  });

  it('does not leak tensors (every path, gradients, errors)', async () => {
    const moe = packedMoe({ hiddenSize: 32, intermediateSize: 32, numExperts: 4, topK: 2 }, ['q4_0', 'bf16'], 51);
    const x = randn([3, 32], 52);
    await expectNoTensorLeak(() => {
      for (const path of PATHS) moe.forward(x, { path }).dispose();
      moe.forwardDense(x).dispose();
      const r = moe.forwardWithRouterLogits(x);
      tf.dispose([r.output, r.routerLogits]);
      for (const path of ['auto', 'grouped'] as const) tf.grad((xx: tf.Tensor) => tf.sum(moe.forward(xx, { path })))(x).dispose();
      tf.tidy(() => expect(() => moe.forward(tf.zeros([2, 5]))).toThrow(/SparseMoE: x/));
      tf.tidy(() =>
        expect(() =>
          moeExperts(x, moe.input_linear.weight.packed!, tf.zeros([4, 32, 32]), tf.zeros([3, 2], 'int32'), tf.ones([3, 2])),
        ).toThrow(/both weights packed/),
      );
    }, backend);
    x.dispose();
    moe.dispose();
  });
});
