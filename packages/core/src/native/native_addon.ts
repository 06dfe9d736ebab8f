import type { WeightDtype } from '../packed/formats';
import { environmentVariable } from '../environment';

/**
 * What core uses of `@graniteflow/native` (an optional dependency): multi-threaded SIMD kernels
 * over plain typed arrays, dispatched at run time to the best instruction set the CPU has.
 */
/** The scan's float32 arrays in ops-mamba's `SelectiveScan` layouts (also the shapes of their gradients). */
export interface NativeScanArrays {
  x: Float32Array;
  dt: Float32Array;
  A_log: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
  dt_bias: Float32Array;
  initialState?: Float32Array;
}

/** Sizes of one scan. */
export interface NativeScanDims {
  batch: number;
  seqLen: number;
  heads: number;
  headDim: number;
  groups: number;
  stateSize: number;
}

export interface NativeAddon {
  /** y[n, out] = x[n, in] · Wᵀ for a weight W [out, in] packed in `format` (or f32), row-major or
   * (q8_0 / q4_0) interleaved. */
  matmul(
    format: WeightDtype,
    w: Uint8Array,
    outFeatures: number,
    inFeatures: number,
    x: Float32Array,
    nRows: number,
    y: Float32Array,
    options?: { interleaved?: boolean },
  ): void;
  /**
   * Regroups a q8_0 / q4_0 weight [rows, cols] in place between row order and the interleaved
   * layout the avx512 matmul reads fastest (absent from builds before it existed).
   */
  interleave?(format: WeightDtype, bytes: Uint8Array, rows: number, cols: number, toInterleaved: boolean): void;
  /**
   * C[M, N] = op(A) · op(B), op transposing when asked; row-major float32. `batch` problems with
   * element strides between them (a stride of 0 broadcasts that operand).
   */
  gemmF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    options?: { batch?: number; strideA?: number; strideB?: number; strideC?: number },
  ): void;
  /** Rows `rowIndices` of a packed table, unpacked into `dst` [rows.length, cols]. */
  dequantizeRows(
    format: WeightDtype,
    src: Uint8Array,
    cols: number,
    rowIndices: Int32Array,
    dst: Float32Array,
    options?: { interleaved?: boolean },
  ): void;
  /** Packs `rows` × `cols` floats into `dst` (ggml's reference quantizers, bit for bit). */
  quantize(format: WeightDtype, src: Float32Array, rows: number, cols: number, dst: Uint8Array): void;
  /**
   * A memory map of (part of) a file, as an ArrayBuffer outside the JS heap whose byte 0 is the
   * file's byte `offset`; `advice` is the madvise hint for the range. Read-only, or with `writable`
   * copy-on-write (writes change this process's pages, never the file).
   */
  mmapFile(
    path: string,
    options?: { offset?: number; length?: number; advice?: 'normal' | 'sequential' | 'random' | 'willneed'; writable?: boolean },
  ): ArrayBuffer;
  /**
   * The Mamba-2 selective scan's sequential recurrence over float32 arrays in ops-mamba's
   * `SelectiveScan` layouts (a decode step is a scan of one token from the previous state).
   */
  ssmScan(
    inputs: NativeScanArrays,
    dims: NativeScanDims,
    dtMin: number,
    dtMax: number,
    out: { y: Float32Array; finalState: Float32Array },
  ): void;
  /** The scan's backward pass: every float input's gradient from dy and dFinalState (all overwritten). */
  ssmScanGrad(
    inputs: NativeScanArrays,
    cotangents: { dy: Float32Array; dFinalState: Float32Array },
    dims: NativeScanDims,
    dtMin: number,
    dtMax: number,
    out: Required<NativeScanArrays>,
  ): void;
  /** Causal depthwise conv over time, channels-last, with its K − 1 input state. */
  causalConv1d(
    inputs: { x: Float32Array; weight: Float32Array; bias?: Float32Array; convState?: Float32Array },
    dims: { batch: number; seqLen: number; channels: number; kernelSize: number },
    activation: 'silu' | 'none',
    out: { y: Float32Array; newState: Float32Array },
  ): void;
  /** Gated RMSNorm (gate before norm) of [rows, dim] in groups of `groupSize` channels. */
  gatedRmsNorm(
    y: Float32Array,
    z: Float32Array,
    weight: Float32Array,
    rows: number,
    dim: number,
    groupSize: number,
    eps: number,
    out: Float32Array,
  ): void;
  /** SwiGLU on packed halves: act[r, i] = silu(a[r, i]) · a[r, inter + i], a [rows, 2·inter], act [rows, inter]. */
  swiglu(a: Float32Array, rows: number, inter: number, act: Float32Array): void;
  /**
   * Routed SwiGLU experts over q8_0 / q4_0 expert weights [E, 2I, H] / [E, H, I] in one call
   * (absent from builds before it existed): y [n, h] is overwritten.
   */
  moeExperts?(
    inputFormat: WeightDtype,
    inputLinear: Uint8Array,
    outputFormat: WeightDtype,
    outputLinear: Uint8Array,
    x: Float32Array,
    dims: { n: number; h: number; inter: number; experts: number; k: number },
    indices: Int32Array,
    weights: Float32Array,
    y: Float32Array,
  ): void;
  /**
   * Softmax attention by an online softmax over key tiles (absent from builds before it existed):
   * q, out [batch, queryLength, queryHeads, headDim]; k, v [batch, capacity, kvHeads, headDim]
   * (headsMajor: [batch, kvHeads, capacity, headDim]) with the first keyLength positions filled; keyMask [batch, keyLength] (0: not attended) or null.
   */
  attention?(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    keyMask: Float32Array | null,
    dims: { batch: number; queryLength: number; queryHeads: number; kvHeads: number; headDim: number; keyLength: number; capacity: number },
    options: { scale: number; causal: boolean; headsMajor?: boolean },
    out: Float32Array,
  ): void;
  /** Calls per kernel (`matmul.q4_0`, `gemmF32`, …) and instruction-set level since load. */
  counters(): Record<string, Record<string, number>>;
  /** The instruction-set level a kernel runs at (`scalar`, `avx2`, `avx512`). */
  kernelLevel(kernel: string): string;
}

/** Why the native addon is not used, or undefined when it loaded. */
let unavailable: string | undefined;
let loaded: NativeAddon | null | undefined;

/**
 * `@graniteflow/native` when it is installed, built for this platform and not switched off with
 * `GRANITEFLOW_NATIVE=0`; otherwise null (see {@link nativeUnavailableReason}). Loaded once.
 */
export function nativeAddon(): NativeAddon | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (environmentVariable('GRANITEFLOW_NATIVE') === '0') {
    unavailable = 'switched off with GRANITEFLOW_NATIVE=0';
    return loaded;
  }
  try {
    const mod = require('@graniteflow/native') as { loadNative(): NativeAddon | null; nativeUnavailableReason?(): string };
    loaded = mod.loadNative();
    if (loaded === null) unavailable = mod.nativeUnavailableReason?.() ?? 'its binary did not load';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    unavailable =
      code === 'MODULE_NOT_FOUND'
        ? '@graniteflow/native is not installed (npm install @graniteflow/native)'
        : `@graniteflow/native failed to load: ${(err as Error).message}`;
  }
  return loaded;
}

/** Why {@link nativeAddon} returned null (undefined when it did not). */
export function nativeUnavailableReason(): string | undefined {
  nativeAddon();
  return unavailable;
}
