import * as tf from '@tensorflow/tfjs-core';
import {
  dequantizeRowsInto,
  initBackend,
  isBackendAvailable,
  PackedMatMul,
  PackedTensor,
  quantizeRows,
  setSimdEnabled,
  simdCounters,
  wasmHeap,
  webAssemblyApi,
  type PackedFormat,
  type WasmHeap,
} from '../src';
import { hasWasmSimd } from '../src/kernels/wasm_heap';
import { simdInstance, simdKernels } from '../src/kernels/simd_module';
import { ACTIVATION_QMAX, PACKED_MATVEC, type PackedMatvecExports } from '../src/packed/packed_matmul_simd';
import { expectNoTensorLeak, randomFloats } from '../src/testing';

/** The weight as the packed bytes hold it (the format's own decoding, tested in packed.test.ts). */
function dequantized(format: PackedFormat, wf: Float32Array, out: number, inF: number): Float32Array {
  const values = new Float32Array(out * inF);
  dequantizeRowsInto(format, quantizeRows(format, wf, out, inF), inF, 0, out, values);
  return values;
}

const U = 2 ** -24; // float32 unit roundoff

/**
 * The float64 oracle y = x · Ŵᵀ of the dequantized weight Ŵ, with a rigorous bound on what the SIMD
 * kernel may differ from it by, per element:
 * - q8_0 / q4_0: the activations are quantized per 32-block b to int16 with d_b = amax_b / 32767,
 *   so |x_j − d_b·q_j| ≤ d_b / 2 and the dot product moves by at most Σ_b d_b/2 · Σ_{j∈b} |ŵ_j|.
 *   The integer block sums are exact (i32); then float32 rounding: the i32 → f32 conversion, the
 *   scale product dw·dx, its product with the block sum, and at most k/32 + 2 additions per lane,
 *   so at most (k/32 + 5)·u relative to Σ |terms|.
 * - bf16: float32 products and at most k additions along any lane: (k + 1)·u · Σ |ŵ_j·x_j|.
 */
function oracleAndBound(
  format: PackedFormat,
  x: Float32Array,
  n: number,
  w: Float32Array,
  out: number,
  k: number,
): { y: Float64Array; bound: Float64Array } {
  const y = new Float64Array(n * out);
  const bound = new Float64Array(n * out);
  const quantized = format !== 'bf16';
  const halfSteps = new Float64Array(k / 32);
  for (let r = 0; r < n; r++) {
    if (quantized) {
      for (let b = 0; b < k / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[r * k + 32 * b + j]));
        halfSteps[b] = amax / ACTIVATION_QMAX / 2;
      }
    }
    for (let o = 0; o < out; o++) {
      let acc = 0;
      let magnitude = 0;
      let quantization = 0;
      for (let j = 0; j < k; j++) {
        const wj = w[o * k + j];
        acc += x[r * k + j] * wj;
        magnitude += Math.abs(x[r * k + j] * wj);
        if (quantized) quantization += halfSteps[j >> 5] * Math.abs(wj);
      }
      const rounding = (quantized ? k / 32 + 5 : k + 1) * U * (magnitude + quantization);
      y[r * out + o] = acc;
      bound[r * out + o] = quantization + rounding;
    }
  }
  return { y, bound };
}

function expectWithin(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, bound: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let worst = -1;
  let worstRatio = 1;
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    const ratio = diff === 0 ? 0 : Number.isNaN(diff) ? Infinity : diff / bound[i];
    if (ratio > worstRatio) {
      worst = i;
      worstRatio = ratio;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ± ${bound[worst]} ` +
        `(|Δ| is ${worstRatio.toPrecision(3)}× the bound)`,
    );
  }
}

const FORMATS: PackedFormat[] = ['bf16', 'q8_0', 'q4_0'];
const calls = (format: PackedFormat) => simdCounters()[`PackedMatMul/${format}`] ?? 0;

/** y from PackedMatMul on the active backend, read back; the tensors are disposed. */
function runPacked(format: PackedFormat, w: PackedTensor, x: Float32Array, n: number, out: number, k: number): Float32Array {
  return tf.tidy(() => {
    const [y] = PackedMatMul.run({ x: tf.tensor2d(x, [n, k]), w: w.bytes }, { format, outFeatures: out, inFeatures: k });
    return y.dataSync() as Float32Array;
  });
}

/** Copies arrays into fresh heap memory; returns their addresses (views die when the heap grows). */
function placeOnHeap(heap: WasmHeap, arrays: ArrayBufferView[]): { at: number[]; free(): void } {
  const sizes = arrays.map((a) => (a.byteLength + 15) & ~15);
  const block = heap.malloc(sizes.reduce((s, b) => s + b, 0) + 16);
  const at: number[] = [];
  let next = (block + 15) & ~15;
  for (const size of sizes) {
    at.push(next);
    next += size;
  }
  arrays.forEach((a, i) =>
    new Uint8Array(heap.memory.buffer, at[i], a.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)),
  );
  return { at, free: () => heap.free(block) };
}

const skipReason = !isBackendAvailable('wasm')
  ? 'the tfjs wasm backend is not installed'
  : !hasWasmSimd()
    ? 'this engine has no WebAssembly SIMD'
    : null;
if (skipReason !== null) console.log(`packed_simd.test.ts: SIMD tests skipped: ${skipReason}.`);
const describeSimd = skipReason === null ? describe : describe.skip;

describeSimd('packed matmul, WebAssembly SIMD kernels [wasm]', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it.each(FORMATS)('%s: every shape agrees with the float64 oracle and the JS body within the bound, and the SIMD path ran', (format) => {
    let seed = 1;
    for (const n of [1, 2, 3, 7, 33]) {
      // 160 = 5 blocks: the one-row loops take four blocks at a time, then the rest one by one.
      for (const k of [32, 64, 96, 160, 2048]) {
        for (const out of [1, 5, 64]) {
          const shape = `n=${n} in=${k} out=${out}`;
          const wf = randomFloats(out * k, seed++);
          const xf = randomFloats(n * k, seed++, 2);
          const w = PackedTensor.fromFloats(format, [out, k], wf);
          const { y: oracle, bound } = oracleAndBound(format, xf, n, dequantized(format, wf, out, k), out, k);

          const before = calls(format);
          const simd = runPacked(format, w, xf, n, out, k);
          expect({ shape, calls: calls(format) }).toEqual({ shape, calls: before + 1 });
          expectWithin(`${format} SIMD vs oracle, ${shape}`, simd, oracle, bound);

          const previous = setSimdEnabled(false);
          let js: Float32Array;
          try {
            js = runPacked(format, w, xf, n, out, k);
          } finally {
            setSimdEnabled(previous);
          }
          expect({ shape, calls: calls(format) }).toEqual({ shape, calls: before + 1 });
          // The JS body sums in float64: only its final float32 store rounds.
          const jsBound = bound.map((b, i) => b + U * Math.abs(oracle[i]));
          expectWithin(`${format} SIMD vs JS body, ${shape}`, simd, js, jsBound);
          w.dispose();
        }
      }
    }
  });

  it.each(['q8_0', 'q4_0'] as const)('%s: subnormal, negative, zero and large f16 scales decode as the JS path does', (format) => {
    const k = 128;
    // Row 0: tiny weights (the q8_0 scale amax/127 ≈ 8e-7 and the q4_0 one are f16 subnormals);
    // row 1: zeros (d = 0); row 2: large weights (d near the f16 maximum, 65504); row 3: mixed.
    const large = format === 'q8_0' ? 8e6 : 5e5; // amax/127 and amax/8
    const rows = [randomFloats(k, 5, 1e-4), new Float32Array(k), randomFloats(k, 6, large), randomFloats(k, 7)];
    rows[3].fill(0, 32, 64);
    const wf = new Float32Array(4 * k);
    rows.forEach((r, i) => wf.set(r, i * k));
    const xf = randomFloats(3 * k, 8);
    xf.fill(0, 64, 96); // a zero activation block: its scale is 0 and its inverse must not be Inf
    const w = PackedTensor.fromFloats(format, [4, k], wf);
    const unpacked = dequantized(format, wf, 4, k);
    expect(unpacked.slice(0, k).some((v) => v !== 0)).toBe(true); // the subnormal scales are not zero
    expect(unpacked.every(Number.isFinite)).toBe(true);
    const tinyScale = quantizeRows(format, rows[0], 1, 32);
    const halfBits = tinyScale[0] | (tinyScale[1] << 8);
    expect([halfBits & 0x7c00, (halfBits & 0x3ff) !== 0]).toEqual([0, true]); // exponent 0, mantissa ≠ 0: subnormal
    const { y: oracle, bound } = oracleAndBound(format, xf, 3, unpacked, 4, k);
    const before = calls(format);
    expectWithin(`${format} special scales`, runPacked(format, w, xf, 3, 4, k), oracle, bound);
    expect(calls(format)).toBe(before + 1);
    w.dispose();
  });

  it('bf16 rows of any length: the vector loops and the scalar tail', () => {
    for (const [n, k] of [
      [1, 5],
      [4, 13],
      [5, 40],
      [6, 33],
    ]) {
      const wf = randomFloats(3 * k, k);
      const xf = randomFloats(n * k, n);
      const w = PackedTensor.fromFloats('bf16', [3, k], wf);
      const { y: oracle, bound } = oracleAndBound('bf16', xf, n, dequantized('bf16', wf, 3, k), 3, k);
      expectWithin(`bf16 n=${n} in=${k}`, runPacked('bf16', w, xf, n, 3, k), oracle, bound);
      w.dispose();
    }
  });

  it('quantizes the activations to int16 per 32-block: d = amax/32767, |x − d·q| ≤ d/2', () => {
    const heap = wasmHeap()!;
    const n = 3;
    const k = 96;
    const x = randomFloats(n * k, 21, 5);
    x.fill(0, 32, 64);
    const { at, free } = placeOnHeap(heap, [x, new Float32Array((n * k) / 32), new Int16Array(n * k)]);
    try {
      simdInstance<PackedMatvecExports>(PACKED_MATVEC, heap.memory).quantize_rows(at[0], n, k, ACTIVATION_QMAX, at[1], at[2]);
      const scales = new Float32Array(heap.memory.buffer, at[1], (n * k) / 32);
      const quants = new Int16Array(heap.memory.buffer, at[2], n * k);
      for (let b = 0; b < (n * k) / 32; b++) {
        const block = x.subarray(32 * b, 32 * b + 32);
        const amax = Math.max(...block.map(Math.abs));
        expect(scales[b]).toBe(Math.fround(amax / ACTIVATION_QMAX));
        let extreme = 0;
        for (let j = 0; j < 32; j++) {
          const q = quants[32 * b + j];
          expect(Math.abs(block[j] - scales[b] * q)).toBeLessThanOrEqual(scales[b] / 2 + amax * U * 2);
          extreme = Math.max(extreme, Math.abs(q));
        }
        expect(extreme).toBe(amax === 0 ? 0 : ACTIVATION_QMAX);
      }
    } finally {
      free();
    }
  });

  it.each(['q8_0', 'q4_0'] as const)('%s: the f32-widening kernels the benchmark compares against agree with the oracle', (format) => {
    const heap = wasmHeap()!;
    for (const [n, k, out] of [
      [1, 64, 5],
      [7, 96, 3],
    ]) {
      const wf = randomFloats(out * k, k + out);
      const xf = randomFloats(n * k, n);
      const { y: oracle, bound } = oracleAndBound('bf16', xf, n, dequantized(format, wf, out, k), out, k); // float32 math: the bf16 bound
      const { at, free } = placeOnHeap(heap, [quantizeRows(format, wf, out, k), xf, new Float32Array(n * out)]);
      try {
        const kernels = simdInstance<PackedMatvecExports>(PACKED_MATVEC, heap.memory);
        (format === 'q8_0' ? kernels.matmul_q8_0_f32 : kernels.matmul_q4_0_f32)(at[0], out, k, at[1], n, at[2]);
        expectWithin(`${format} f32 widening n=${n}`, new Float32Array(heap.memory.buffer, at[2], n * out), oracle, bound);
      } finally {
        free();
      }
    }
  });

  it('setSimdEnabled(false) (GRANITEFLOW_SIMD=0) runs the JS body: the counter stays', () => {
    const w = PackedTensor.fromFloats('q4_0', [5, 64], randomFloats(5 * 64, 31));
    const x = randomFloats(2 * 64, 32);
    const before = calls('q4_0');
    const previous = setSimdEnabled(false);
    try {
      expect(simdKernels(PACKED_MATVEC, [])).toBeNull();
      runPacked('q4_0', w, x, 2, 5, 64);
    } finally {
      setSimdEnabled(previous);
    }
    expect(calls('q4_0')).toBe(before);
    runPacked('q4_0', w, x, 2, 5, 64);
    expect(calls('q4_0')).toBe(before + 1);
    w.dispose();
  });

  it('GRANITEFLOW_SIMD=0 in the environment switches SIMD off when core loads', () => {
    const saved = process.env.GRANITEFLOW_SIMD;
    try {
      for (const [value, enabled] of [
        ['0', false],
        ['1', true],
        [undefined, true],
      ] as const) {
        if (value === undefined) delete process.env.GRANITEFLOW_SIMD;
        else process.env.GRANITEFLOW_SIMD = value;
        jest.isolateModules(() => {
          const fresh = require('../src/kernels/simd_switch') as typeof import('../src/kernels/simd_switch');
          expect({ value, enabled: fresh.isSimdEnabled() }).toEqual({ value, enabled });
        });
      }
    } finally {
      if (saved === undefined) delete process.env.GRANITEFLOW_SIMD;
      else process.env.GRANITEFLOW_SIMD = saved;
    }
  });

  it('the cpu backend keeps the JS loop', async () => {
    const w = PackedTensor.fromFloats('q8_0', [3, 32], randomFloats(96, 41));
    const before = calls('q8_0');
    await initBackend('cpu');
    try {
      const wCpu = PackedTensor.fromFloats('q8_0', [3, 32], randomFloats(96, 41));
      runPacked('q8_0', wCpu, randomFloats(32, 42), 1, 3, 32);
      wCpu.dispose();
    } finally {
      await initBackend('wasm');
    }
    expect(calls('q8_0')).toBe(before);
    w.dispose();
  });

  it('one instance per memory: the same memory reuses it, a new memory gets its own', () => {
    const api = webAssemblyApi()!;
    const a = new api.Memory({ initial: 1 });
    const b = new api.Memory({ initial: 1 });
    const onA = simdInstance<PackedMatvecExports>(PACKED_MATVEC, a);
    expect(simdInstance(PACKED_MATVEC, a)).toBe(onA);
    const onB = simdInstance<PackedMatvecExports>(PACKED_MATVEC, b);
    expect(onB).not.toBe(onA);
    // Each reads and writes its own memory: y = 1·2 + 3·4 + … over bf16 weights placed in b only.
    const words = new Uint16Array(b.buffer, 0, 8);
    const xs = new Float32Array(b.buffer, 64, 8);
    for (let j = 0; j < 8; j++) {
      words[j] = new Uint32Array(new Float32Array([j + 1]).buffer)[0] >>> 16;
      xs[j] = 2;
    }
    onB.matmul_bf16(0, 1, 8, 64, 1, 128);
    expect(new Float32Array(b.buffer, 128, 1)[0]).toBe(72);
    expect(new Float32Array(a.buffer, 128, 1)[0]).toBe(0);
  });

  it('a module that was not built is a clear error naming the file and the command', () => {
    const memory = new (webAssemblyApi()!.Memory)({ initial: 1 });
    expect(() => simdInstance('no_such_family', memory)).toThrow(
      /kernels "no_such_family" of @graniteflow\/core are not built: .*wasm[/\\]no_such_family\.wasm is missing\. Build them with `npm run build:wasm -w @graniteflow\/core`/,
    );
  });

  it('does not leak tensors', async () => {
    const w = PackedTensor.fromFloats('q8_0', [4, 64], randomFloats(256, 51));
    await expectNoTensorLeak(() => {
      runPacked('q8_0', w, randomFloats(3 * 64, 52), 3, 4, 64);
    });
    w.dispose();
  });
});
