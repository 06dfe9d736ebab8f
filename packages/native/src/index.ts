/**
 * `@graniteflow/native`: multi-threaded SIMD kernels behind Node-API for packed GGUF-layout
 * weights (f32, bf16, q8_0, q4_0), an f32 gemm and memory-mapped weight files.
 *
 * ```ts
 * import { loadNative } from '@graniteflow/native';
 * const native = loadNative();          // null (with nativeUnavailableReason()) when absent
 * if (native) native.matmul('q4_0', packed, out, inF, x, 1, y);
 * ```
 *
 * @packageDocumentation
 */
import { constants as bufferConstants } from 'node:buffer';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nodeGypBuild = require('node-gyp-build');

/** Packed weight formats, with GGUF / ggml's block layouts. */
export type Format = 'f32' | 'bf16' | 'q8_0' | 'q4_0';
/** Dispatch levels, lowest first. */
export type Level = 'scalar' | 'avx2' | 'avx512';
export const FORMATS: readonly Format[] = ['f32', 'bf16', 'q8_0', 'q4_0'];
export const LEVELS: readonly Level[] = ['scalar', 'avx2', 'avx512'];

/** A kernel as dispatched and counted: the family and, except for gemmF32, the format. */
export type KernelName =
  | `quantize.${Format}`
  | `dequantize.${Format}`
  | `dequantizeRows.${Format}`
  | `matmul.${Format}`
  | 'gemmF32'
  | 'ssmScan'
  | 'causalConv1d'
  | 'gatedRmsNorm'
  | 'swiglu'
  | 'moeExperts'
  | 'attention'
  | 'ssmScanGrad';
export const KERNELS: readonly KernelName[] = [
  ...(['quantize', 'dequantize', 'dequantizeRows', 'matmul'] as const).flatMap((family) =>
    FORMATS.map((format) => `${family}.${format}` as KernelName),
  ),
  'gemmF32',
  'ssmScan',
  'causalConv1d',
  'gatedRmsNorm',
  'swiglu',
  'moeExperts',
  'attention',
  'ssmScanGrad',
];

export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

export interface CpuFeatures {
  avx2: boolean;
  fma: boolean;
  f16c: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512vl: boolean;
  avx512vnni: boolean;
  avx512bf16: boolean;
  /** The OS saves AVX (ymm) state (XCR0). */
  osAvx: boolean;
  /** The OS saves AVX-512 (opmask, zmm) state (XCR0). */
  osAvx512: boolean;
}

export interface MatmulOptions {
  /** Add to y instead of overwriting it. */
  accumulate?: boolean;
  /** W is in the interleaved layout ({@link Native.interleave}; q8_0 / q4_0 only). */
  interleaved?: boolean;
}

export interface DequantizeRowsOptions {
  /** src is in the interleaved layout ({@link Native.interleave}; q8_0 / q4_0 only). */
  interleaved?: boolean;
}

export interface GemmOptions {
  /** Problems in the batch (default 1). */
  batch?: number;
  /** Elements between consecutive problems' A (default M * K; 0 broadcasts A). */
  strideA?: number;
  /** Elements between consecutive problems' B (default K * N; 0 broadcasts B). */
  strideB?: number;
  /** Elements between consecutive problems' C (default M * N; at least M * N when batch > 1). */
  strideC?: number;
  /** Add to C instead of overwriting it. */
  accumulate?: boolean;
}

/** Sizes of one Mamba-2 selective scan (a decode step is a scan with seqLen 1). */
export interface SsmScanDims {
  batch: number;
  seqLen: number;
  /** Hm */
  heads: number;
  /** P */
  headDim: number;
  /** G, which divides heads: head h reads group h / (heads / groups) */
  groups: number;
  /** N */
  stateSize: number;
}

/** Options of {@link Native.attention}. */
export interface AttentionOptions {
  /** Multiplies q·k before the softmax. */
  scale: number;
  /** Query t sees keys s ≤ keyLength − queryLength + t only. */
  causal: boolean;
  /**
   * `k` and `v` are [batch, kvHeads, capacity, headDim] (each head's positions contiguous, which
   * streams from memory faster) instead of [batch, capacity, kvHeads, headDim].
   */
  headsMajor?: boolean;
}

/** Sizes of {@link Native.attention}'s arrays. */
export interface AttentionDims {
  batch: number;
  queryLength: number;
  queryHeads: number;
  kvHeads: number;
  headDim: number;
  /** Filled positions of the key / value cache. */
  keyLength: number;
  /** Positions the key / value arrays hold (≥ keyLength). */
  capacity: number;
}

/** Inputs of {@link Native.ssmScan}, float32, in ops-mamba's `SelectiveScan` layouts. */
export interface SsmScanInputs {
  /** [batch, seqLen, heads, headDim] */
  x: Float32Array;
  /** [batch, seqLen, heads], before dt_bias and softplus */
  dt: Float32Array;
  /** [heads] log of −A */
  A_log: Float32Array;
  /** [batch, seqLen, groups, stateSize] */
  B: Float32Array;
  /** [batch, seqLen, groups, stateSize] */
  C: Float32Array;
  /** [heads] */
  D: Float32Array;
  /** [heads] */
  dt_bias: Float32Array;
  /** [batch, heads, headDim, stateSize] state before the first token (zeros when absent) */
  initialState?: Float32Array;
}

/** Upstream gradients of {@link Native.ssmScan}'s two outputs. */
export interface SsmScanCotangents {
  /** [batch, seqLen, heads, headDim] */
  dy: Float32Array;
  /** [batch, heads, headDim, stateSize] */
  dFinalState: Float32Array;
}

/**
 * Gradients of {@link Native.ssmScanGrad}, each shaped as its input; every one is overwritten
 * (`initialState` too, even when the scan had none).
 */
export type SsmScanGradients = Required<SsmScanInputs>;

/** Sizes of one causal depthwise conv. */
export interface CausalConv1dDims {
  batch: number;
  seqLen: number;
  channels: number;
  /** K ≥ 1; tap K − 1 multiplies the current token */
  kernelSize: number;
}

/** Inputs of {@link Native.causalConv1d}, channels-last float32. */
export interface CausalConv1dInputs {
  /** [batch, seqLen, channels] */
  x: Float32Array;
  /** [channels, kernelSize] */
  weight: Float32Array;
  /** [channels] */
  bias?: Float32Array;
  /** [batch, kernelSize − 1, channels] raw inputs before x (zeros when absent) */
  convState?: Float32Array;
}

export type MmapAdvice = 'normal' | 'sequential' | 'random' | 'willneed';

export interface MmapOptions {
  /** Byte offset into the file (any value; the mapping starts at the page below it). */
  offset?: number;
  /** Bytes to map (default: to the end of the file). */
  length?: number;
  /** madvise hint for the mapped range: 'willneed' starts read-ahead of all of it (a model
   * whose every weight the first forward pass touches), 'sequential' / 'random' tune read-ahead. */
  advice?: MmapAdvice;
  /** Map copy-on-write (PROT_READ | PROT_WRITE, MAP_PRIVATE): writes change this process's pages,
   * never the file (e.g. {@link Native.interleave} in place). Default: read-only. */
  writable?: boolean;
}

/** The loaded addon with argument checking. Every kernel is a synchronous call. */
export interface Native {
  /** Where the binary was loaded from. */
  readonly binaryPath: string;
  /** Bytes of one packed row of `cols` weights. */
  rowBytes(format: Format, cols: number): number;
  /** Bytes of a packed [rows, cols] weight. */
  packedByteLength(format: Format, rows: number, cols: number): number;
  /** Packs src ([rows, cols] float32) into dst (exactly packedByteLength bytes); bit-exact with
   * ggml's reference quantizers (bf16: round to nearest even, NaN kept NaN). */
  quantize(format: Format, src: Float32Array, rows: number, cols: number, dst: TypedArray): void;
  /** Unpacks src (a packed [rows, cols] weight) into dst (rows * cols float32). */
  dequantize(format: Format, src: TypedArray, rows: number, cols: number, dst: Float32Array): void;
  /** dst[i, :] = row rowIndices[i] of src (a packed weight of whole rows): embedding gathers. */
  dequantizeRows(
    format: Format,
    src: TypedArray,
    cols: number,
    rowIndices: Int32Array,
    dst: Float32Array,
    options?: DequantizeRowsOptions,
  ): void;
  /**
   * Converts a q8_0 / q4_0 weight [rows, cols] in place between row order (GGUF's) and the
   * interleaved layout that the avx512 matmul reads fastest: per group of 16 rows (the same bytes
   * those rows occupy), each block's quant bytes as 64-byte vectors whose 4-byte lane p belongs
   * to row p of the group, then the group's f16 scales block by block; the last rows % 16 rows
   * stay in row order. `toInterleaved` false converts back. Throws for bytes in a read-only
   * mapping (map with `writable`).
   */
  interleave(format: Format, bytes: TypedArray, rows: number, cols: number, toInterleaved: boolean): void;
  /**
   * y[n, o] = sum_k x[n, k] * W[o, k] for W [outFeatures, inFeatures] packed row-major (or
   * interleaved: `options.interleaved`), x [nRows, inFeatures], y [nRows, outFeatures]. q8_0 / q4_0 quantize x to q8_0 per 32-block
   * (integer block dot products, as llama.cpp); f32 / bf16 multiply in float32.
   */
  matmul(
    format: Format,
    w: TypedArray,
    outFeatures: number,
    inFeatures: number,
    x: Float32Array,
    nRows: number,
    y: Float32Array,
    options?: MatmulOptions,
  ): void;
  /**
   * C = op(A) op(B) (row-major): A is [M, K] ([K, M] when transposeA), B is [K, N] ([N, K] when
   * transposeB), C is [M, N]; batched with element strides through `options`.
   */
  gemmF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    M: number,
    N: number,
    K: number,
    transposeA: boolean,
    transposeB: boolean,
    options?: GemmOptions,
  ): void;
  /**
   * The Mamba-2 selective scan as its sequential recurrence (ops-mamba's `selectiveScanImpl`):
   * `S_t = exp(dt·A)·S_{t−1} + dt·x_t⊗B_t`, `y_t = S_t·C_t + D·x_t` with
   * `dt = clamp(softplus(dt + dt_bias), dtMin, dtMax)` and `A = −exp(A_log)`. Threads split the
   * (sequence, head) pairs. `out.finalState` may be `inputs.initialState` itself (updated in place).
   */
  ssmScan(inputs: SsmScanInputs, dims: SsmScanDims, dtMin: number, dtMax: number, out: { y: Float32Array; finalState: Float32Array }): void;
  /**
   * The backward pass of {@link Native.ssmScan} (ops-mamba's `selectiveScanGradImpl`): the
   * gradients of every float input from `dy` and `dFinalState`, by a reverse sweep in double over
   * states checkpointed every 64 tokens. Threads split the (sequence, head) pairs.
   */
  ssmScanGrad(
    inputs: SsmScanInputs,
    cotangents: SsmScanCotangents,
    dims: SsmScanDims,
    dtMin: number,
    dtMax: number,
    out: SsmScanGradients,
  ): void;
  /**
   * Causal depthwise conv over time (ops-mamba's `causalConv1dImpl`): `y_t[c] = act(bias[c] +
   * Σ_k w[c, k]·u_{t−K+1+k}[c])` over u = [convState, x]; `out.newState` gets u's last K − 1 rows.
   */
  causalConv1d(
    inputs: CausalConv1dInputs,
    dims: CausalConv1dDims,
    activation: 'silu' | 'none',
    out: { y: Float32Array; newState: Float32Array },
  ): void;
  /**
   * Gated RMSNorm, gate before norm: `g = y·silu(z)`, each group of `groupSize` channels of a
   * [rows, dim] row scaled by 1/sqrt(mean(g²) + eps), then by `weight` [dim].
   */
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
  /**
   * SwiGLU on packed halves (ops-moe's `swigluImpl`): for `a` [rows, 2·inter] and `act`
   * [rows, inter], `act[r, i] = silu(a[r, i])·a[r, inter + i]` (first half gate, second half up)
   * with `silu(g) = g / (1 + exp(−g))` in float32. `act` must not share memory with `a`.
   */
  swiglu(a: Float32Array, rows: number, inter: number, act: Float32Array): void;
  /**
   * Routed SwiGLU experts over q8_0 / q4_0 expert weights in one call (ops-moe's
   * `MoePackedExperts`): `y[t] = Σ_j weights[t, j] · W2[e]·(silu(W1[e][:I]·x[t]) ⊙ W1[e][I:]·x[t])`
   * with `e = indices[t, j]`, `W1` = `inputLinear` [experts, 2·inter, h] and `W2` = `outputLinear`
   * [experts, h, inter] packed row-major (row order). One token's k experts are multiplied
   * together (one pass of the threads per projection); more tokens are grouped by expert.
   * `y` [n, h] is overwritten; unselected experts are never read.
   */
  moeExperts(
    inputFormat: Format,
    inputLinear: TypedArray,
    outputFormat: Format,
    outputLinear: TypedArray,
    x: Float32Array,
    dims: { n: number; h: number; inter: number; experts: number; k: number },
    indices: Int32Array,
    weights: Float32Array,
    y: Float32Array,
  ): void;
  /**
   * Softmax attention without the scores matrix (an online softmax over tiles of keys):
   * `out[b, t, j] = Σ_s softmax_s(scale · q[b, t, j]·k[b, s, j / rep]) · v[b, s, j / rep]` over the
   * allowed keys s < `keyLength`, rep = queryHeads / kvHeads (grouped-query attention, K and V not
   * repeated). `q` and `out` are [batch, queryLength, queryHeads, headDim]; `k` and `v` are a cache
   * [batch, capacity, kvHeads, headDim] (`options.headsMajor`: [batch, kvHeads, capacity, headDim])
   * whose first `keyLength` positions are filled. Key s is
   * allowed when `keyMask` [batch, keyLength] is non-zero there (null: every key) and, with
   * `causal`, when s ≤ keyLength − queryLength + t (the queries are the last positions). A query
   * with no allowed key gets zeros. Threads split (sequence, KV head, block of 16 queries).
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    keyMask: Float32Array | null,
    dims: AttentionDims,
    options: AttentionOptions,
    out: Float32Array,
  ): void;
  /** Threads in all (the calling thread takes part); workers start on the next parallel call. */
  setThreads(n: number): void;
  threads(): number;
  /** A read-only (PROT_READ, MAP_PRIVATE) mapping of a file as an external ArrayBuffer, unmapped
   * when the ArrayBuffer is collected. Nothing is copied into the JS heap. Writing into it
   * crashes the process (the pages are read-only) unless `options.writable` made it copy-on-write. */
  mmapFile(filePath: string, options?: MmapOptions): ArrayBuffer;
  cpuFeatures(): CpuFeatures;
  /** The best level this CPU supports. */
  cpuLevel(): Level;
  /** The level the kernel runs at now (CPU, setLevel cap and the levels implemented for it). */
  kernelLevel(kernel: KernelName): Level;
  /** Caps every kernel at `level` ('avx512' = no cap). */
  setLevel(level: Level): void;
  /** The current cap. */
  level(): Level;
  /** Calls per kernel and level since load (or resetCounters). */
  counters(): Record<KernelName, Record<Level, number>>;
  resetCounters(): void;
}

/** The raw binding (addon.c); its own checks are a second line behind the ones here. */
interface Binding {
  rowBytes(format: string, cols: number): number;
  quantize(format: string, src: Float32Array, rows: number, cols: number, dst: TypedArray): void;
  dequantize(format: string, src: TypedArray, rows: number, cols: number, dst: Float32Array): void;
  dequantizeRows(format: string, src: TypedArray, cols: number, rows: Int32Array, dst: Float32Array, interleaved: boolean): void;
  interleave(format: string, bytes: TypedArray, rows: number, cols: number, toInterleaved: boolean): void;
  matmul(
    format: string,
    w: TypedArray,
    out: number,
    inF: number,
    x: Float32Array,
    n: number,
    y: Float32Array,
    accumulate: boolean,
    interleaved: boolean,
  ): void;
  gemmF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    ta: boolean,
    tb: boolean,
    batch: number,
    sa: number,
    sb: number,
    sc: number,
    accumulate: boolean,
  ): void;
  mmapFile(filePath: string, offset: number, length: number | undefined, advice: string, writable: boolean): ArrayBuffer;
  ssmScan(
    x: Float32Array,
    dt: Float32Array,
    aLog: Float32Array,
    b: Float32Array,
    c: Float32Array,
    d: Float32Array,
    dtBias: Float32Array,
    initialState: Float32Array | null,
    batch: number,
    seqLen: number,
    heads: number,
    headDim: number,
    groups: number,
    stateSize: number,
    dtMin: number,
    dtMax: number,
    y: Float32Array,
    finalState: Float32Array,
  ): void;
  ssmScanGrad(
    x: Float32Array,
    dt: Float32Array,
    aLog: Float32Array,
    b: Float32Array,
    c: Float32Array,
    d: Float32Array,
    dtBias: Float32Array,
    initialState: Float32Array | null,
    dy: Float32Array,
    dFinalState: Float32Array,
    batch: number,
    seqLen: number,
    heads: number,
    headDim: number,
    groups: number,
    stateSize: number,
    dtMin: number,
    dtMax: number,
    dx: Float32Array,
    ddt: Float32Array,
    dALog: Float32Array,
    dB: Float32Array,
    dC: Float32Array,
    dD: Float32Array,
    dDtBias: Float32Array,
    dInitialState: Float32Array,
  ): void;
  causalConv1d(
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array | null,
    convState: Float32Array | null,
    batch: number,
    seqLen: number,
    channels: number,
    kernelSize: number,
    silu: boolean,
    y: Float32Array,
    newState: Float32Array,
  ): void;
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
  swiglu(a: Float32Array, rows: number, inter: number, act: Float32Array): void;
  moeExperts(
    inputFormat: string,
    inputLinear: TypedArray,
    outputFormat: string,
    outputLinear: TypedArray,
    x: Float32Array,
    n: number,
    h: number,
    inter: number,
    experts: number,
    k: number,
    indices: Int32Array,
    weights: Float32Array,
    y: Float32Array,
  ): void;
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    keyMask: Float32Array | null,
    batch: number,
    queryLength: number,
    queryHeads: number,
    kvHeads: number,
    headDim: number,
    keyLength: number,
    capacity: number,
    causal: boolean,
    scale: number,
    out: Float32Array,
    headsMajor: boolean,
  ): void;
  setThreads(n: number): void;
  threads(): number;
  cpuFeatures(): CpuFeatures;
  cpuLevel(): string;
  kernelLevel(kernel: string): string;
  setLevel(level: string): void;
  levelCap(): string;
  kernelNames(): string[];
  counters(): Record<string, Record<string, number>>;
  resetCounters(): void;
}

const PACKAGE_ROOT = path.join(__dirname, '..');
const MAX_THREADS = 256;

let loaded: Native | null | undefined;
let unavailableReason: string | undefined;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as TypedArray).length}`;
  if (Array.isArray(value)) return 'an Array';
  if (typeof value === 'string') return `the string '${value}'`;
  if (typeof value === 'object') return `a ${(value as object).constructor?.name ?? 'object'}`;
  return `${typeof value} ${String(value)}`;
}

function formatOf(fn: string, format: unknown): Format {
  if (typeof format !== 'string' || !(FORMATS as readonly string[]).includes(format))
    throw new TypeError(`${fn}: format must be one of ${FORMATS.join(', ')}, got ${describe(format)}`);
  return format as Format;
}

function count(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${fn}: ${name} must be a number, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${fn}: ${name} must be a non-negative integer, got ${value}`);
  return value;
}

function blockCols(fn: string, name: string, format: Format, cols: number): void {
  if ((format === 'q8_0' || format === 'q4_0') && cols % 32 !== 0)
    throw new RangeError(`${fn}: ${name} must be a multiple of 32 for ${format} (its blocks hold 32 values), got ${cols}`);
}

function rowBytesOf(format: Format, cols: number): number {
  switch (format) {
    case 'f32':
      return cols * 4;
    case 'bf16':
      return cols * 2;
    case 'q8_0':
      return (cols / 32) * 34;
    case 'q4_0':
      return (cols / 32) * 18;
  }
}

function float32(fn: string, name: string, value: unknown, length: number, what: string): Float32Array {
  if (!(value instanceof Float32Array)) throw new TypeError(`${fn}: ${name} must be a Float32Array, got ${describe(value)}`);
  if (value.length !== length) throw new RangeError(`${fn}: ${name} must hold ${what} = ${length} elements, got ${value.length}`);
  return value;
}

/** The sizes of a scan's arrays, for checking each (elements, and how that count is made). */
function scanSizes(batch: number, T: number, H: number, P: number, G: number, N: number): Record<keyof SsmScanGradients, [number, string]> {
  const xs = `batch * seqLen * heads * headDim = ${batch} * ${T} * ${H} * ${P}`;
  const bcs = `batch * seqLen * groups * stateSize = ${batch} * ${T} * ${G} * ${N}`;
  return {
    x: [batch * T * H * P, xs],
    dt: [batch * T * H, `batch * seqLen * heads = ${batch} * ${T} * ${H}`],
    A_log: [H, 'heads'],
    B: [batch * T * G * N, bcs],
    C: [batch * T * G * N, bcs],
    D: [H, 'heads'],
    dt_bias: [H, 'heads'],
    initialState: [batch * H * P * N, `batch * heads * headDim * stateSize = ${batch} * ${H} * ${P} * ${N}`],
  };
}

/** ssmScan's and ssmScanGrad's shared checks: the dims, the time-step limits and every input array. */
function checkedScan(fn: string, inputs: SsmScanInputs, dims: SsmScanDims, dtMin: number, dtMax: number) {
  const batch = count(fn, 'dims.batch', dims.batch),
    T = count(fn, 'dims.seqLen', dims.seqLen);
  const H = count(fn, 'dims.heads', dims.heads),
    P = count(fn, 'dims.headDim', dims.headDim);
  const G = count(fn, 'dims.groups', dims.groups),
    N = count(fn, 'dims.stateSize', dims.stateSize);
  if (G === 0 || H % G !== 0) throw new RangeError(`${fn}: dims.groups must be positive and divide dims.heads = ${H}, got ${G}`);
  const lo = number(fn, 'dtMin', dtMin),
    hi = number(fn, 'dtMax', dtMax);
  const size = scanSizes(batch, T, H, P, G, N);
  const input = (k: Exclude<keyof SsmScanInputs, 'initialState'>) => float32(fn, `inputs.${k}`, inputs[k], ...size[k]);
  const checked = {
    x: input('x'),
    dt: input('dt'),
    A_log: input('A_log'),
    B: input('B'),
    C: input('C'),
    D: input('D'),
    dt_bias: input('dt_bias'),
    initialState: inputs.initialState === undefined ? null : float32(fn, 'inputs.initialState', inputs.initialState, ...size.initialState),
  };
  return { batch, T, H, P, G, N, lo, hi, arrays: { size, checked } };
}

function typed(fn: string, name: string, value: unknown): TypedArray {
  if (!ArrayBuffer.isView(value) || value instanceof DataView || isBigIntArray(value))
    throw new TypeError(`${fn}: ${name} must be a typed array (e.g. a Uint8Array), got ${describe(value)}`);
  return value as TypedArray;
}

function isBigIntArray(value: ArrayBufferView): boolean {
  return value instanceof BigInt64Array || value instanceof BigUint64Array;
}

function packed(fn: string, name: string, value: unknown, bytes: number, what: string): TypedArray {
  const view = typed(fn, name, value);
  if (view.byteLength !== bytes) throw new RangeError(`${fn}: ${name} must hold ${what} = ${bytes} bytes, got ${view.byteLength}`);
  return view;
}

function flag(fn: string, name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new TypeError(`${fn}: ${name} must be a boolean, got ${describe(value)}`);
  return value;
}

/** The interleaved option, which only the block formats have. */
function interleavedFlag(fn: string, format: Format, value: unknown): boolean {
  const on = flag(fn, 'options.interleaved', value);
  if (on && format !== 'q8_0' && format !== 'q4_0')
    throw new RangeError(`${fn}: only q8_0 and q4_0 weights have an interleaved layout, got ${format}`);
  return on;
}

function number(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`${fn}: ${name} must be a number, got ${describe(value)}`);
  if (Number.isNaN(value)) throw new RangeError(`${fn}: ${name} must be a number other than NaN`);
  return value;
}

function levelOf(fn: string, level: unknown): Level {
  if (typeof level !== 'string' || !(LEVELS as readonly string[]).includes(level))
    throw new RangeError(`${fn}: level must be one of ${LEVELS.join(', ')}, got ${describe(level)}`);
  return level as Level;
}

function wrap(binding: Binding, binaryPath: string): Native {
  const native: Native = {
    binaryPath,
    rowBytes(format, cols) {
      const f = formatOf('rowBytes', format);
      count('rowBytes', 'cols', cols);
      blockCols('rowBytes', 'cols', f, cols);
      return rowBytesOf(f, cols);
    },
    packedByteLength(format, rows, cols) {
      const f = formatOf('packedByteLength', format);
      count('packedByteLength', 'rows', rows);
      count('packedByteLength', 'cols', cols);
      blockCols('packedByteLength', 'cols', f, cols);
      return rows * rowBytesOf(f, cols);
    },
    quantize(format, src, rows, cols, dst) {
      const fn = 'quantize';
      const f = formatOf(fn, format);
      count(fn, 'rows', rows);
      count(fn, 'cols', cols);
      blockCols(fn, 'cols', f, cols);
      float32(fn, 'src', src, rows * cols, `rows * cols = ${rows} * ${cols}`);
      packed(fn, 'dst', dst, rows * rowBytesOf(f, cols), `packedByteLength('${f}', ${rows}, ${cols})`);
      binding.quantize(f, src, rows, cols, dst);
    },
    dequantize(format, src, rows, cols, dst) {
      const fn = 'dequantize';
      const f = formatOf(fn, format);
      count(fn, 'rows', rows);
      count(fn, 'cols', cols);
      blockCols(fn, 'cols', f, cols);
      packed(fn, 'src', src, rows * rowBytesOf(f, cols), `packedByteLength('${f}', ${rows}, ${cols})`);
      float32(fn, 'dst', dst, rows * cols, `rows * cols = ${rows} * ${cols}`);
      binding.dequantize(f, src, rows, cols, dst);
    },
    dequantizeRows(format, src, cols, rowIndices, dst, options = {}) {
      const fn = 'dequantizeRows';
      const f = formatOf(fn, format);
      count(fn, 'cols', cols);
      if (cols === 0) throw new RangeError(`${fn}: cols must be positive, got 0`);
      blockCols(fn, 'cols', f, cols);
      const view = typed(fn, 'src', src);
      const rowBytes = rowBytesOf(f, cols);
      if (view.byteLength % rowBytes !== 0)
        throw new RangeError(
          `${fn}: src must hold whole rows of rowBytes('${f}', ${cols}) = ${rowBytes} bytes, got ${view.byteLength} bytes`,
        );
      const rows = view.byteLength / rowBytes;
      if (!(rowIndices instanceof Int32Array)) throw new TypeError(`${fn}: rowIndices must be an Int32Array, got ${describe(rowIndices)}`);
      for (let i = 0; i < rowIndices.length; i++) {
        const r = rowIndices[i];
        if (r < 0 || r >= rows) throw new RangeError(`${fn}: rowIndices[${i}] = ${r} is outside the ${rows} rows of src`);
      }
      float32(fn, 'dst', dst, rowIndices.length * cols, `rowIndices.length * cols = ${rowIndices.length} * ${cols}`);
      const interleaved = interleavedFlag(fn, f, options.interleaved);
      binding.dequantizeRows(f, src, cols, rowIndices, dst, interleaved);
    },
    interleave(format, bytes, rows, cols, toInterleaved) {
      const fn = 'interleave';
      const f = formatOf(fn, format);
      count(fn, 'rows', rows);
      count(fn, 'cols', cols);
      blockCols(fn, 'cols', f, cols);
      interleavedFlag(fn, f, true);
      packed(fn, 'bytes', bytes, rows * rowBytesOf(f, cols), `packedByteLength('${f}', ${rows}, ${cols})`);
      binding.interleave(f, bytes, rows, cols, flag(fn, 'toInterleaved', toInterleaved));
    },
    matmul(format, w, outFeatures, inFeatures, x, nRows, y, options = {}) {
      const fn = 'matmul';
      const f = formatOf(fn, format);
      count(fn, 'outFeatures', outFeatures);
      count(fn, 'inFeatures', inFeatures);
      count(fn, 'nRows', nRows);
      blockCols(fn, 'inFeatures', f, inFeatures);
      packed(
        fn,
        'w',
        w,
        outFeatures * rowBytesOf(f, inFeatures),
        `packedByteLength('${f}', outFeatures, inFeatures) = packedByteLength('${f}', ${outFeatures}, ${inFeatures})`,
      );
      float32(fn, 'x', x, nRows * inFeatures, `nRows * inFeatures = ${nRows} * ${inFeatures}`);
      float32(fn, 'y', y, nRows * outFeatures, `nRows * outFeatures = ${nRows} * ${outFeatures}`);
      const accumulate = flag(fn, 'options.accumulate', options.accumulate);
      const interleaved = interleavedFlag(fn, f, options.interleaved);
      binding.matmul(f, w, outFeatures, inFeatures, x, nRows, y, accumulate, interleaved);
    },
    ssmScan(inputs, dims, dtMin, dtMax, out) {
      const fn = 'ssmScan';
      const { batch, T, H, P, G, N, lo, hi, arrays } = checkedScan(fn, inputs, dims, dtMin, dtMax);
      const y = float32(fn, 'out.y', out.y, ...arrays.size.x);
      const finalState = float32(fn, 'out.finalState', out.finalState, ...arrays.size.initialState);
      const a = arrays.checked;
      binding.ssmScan(a.x, a.dt, a.A_log, a.B, a.C, a.D, a.dt_bias, a.initialState, batch, T, H, P, G, N, lo, hi, y, finalState);
    },
    ssmScanGrad(inputs, cotangents, dims, dtMin, dtMax, out) {
      const fn = 'ssmScanGrad';
      const { batch, T, H, P, G, N, lo, hi, arrays } = checkedScan(fn, inputs, dims, dtMin, dtMax);
      const a = arrays.checked;
      const dy = float32(fn, 'cotangents.dy', cotangents.dy, ...arrays.size.x);
      const dFinal = float32(fn, 'cotangents.dFinalState', cotangents.dFinalState, ...arrays.size.initialState);
      const grad = (k: keyof SsmScanGradients) => float32(fn, `out.${k}`, out[k], ...arrays.size[k]);
      binding.ssmScanGrad(
        a.x,
        a.dt,
        a.A_log,
        a.B,
        a.C,
        a.D,
        a.dt_bias,
        a.initialState,
        dy,
        dFinal,
        batch,
        T,
        H,
        P,
        G,
        N,
        lo,
        hi,
        grad('x'),
        grad('dt'),
        grad('A_log'),
        grad('B'),
        grad('C'),
        grad('D'),
        grad('dt_bias'),
        grad('initialState'),
      );
    },
    causalConv1d(inputs, dims, activation, out) {
      const fn = 'causalConv1d';
      const batch = count(fn, 'dims.batch', dims.batch),
        T = count(fn, 'dims.seqLen', dims.seqLen);
      const C = count(fn, 'dims.channels', dims.channels),
        K = count(fn, 'dims.kernelSize', dims.kernelSize);
      if (K === 0) throw new RangeError(`${fn}: dims.kernelSize must be at least 1, got 0`);
      if (activation !== 'silu' && activation !== 'none')
        throw new RangeError(`${fn}: activation must be 'silu' or 'none', got ${describe(activation)}`);
      const xs = `batch * seqLen * channels = ${batch} * ${T} * ${C}`;
      const ss = `batch * (kernelSize - 1) * channels = ${batch} * ${K - 1} * ${C}`;
      const x = float32(fn, 'inputs.x', inputs.x, batch * T * C, xs);
      const w = float32(fn, 'inputs.weight', inputs.weight, C * K, `channels * kernelSize = ${C} * ${K}`);
      const bias = inputs.bias === undefined ? null : float32(fn, 'inputs.bias', inputs.bias, C, 'channels');
      const state = inputs.convState === undefined ? null : float32(fn, 'inputs.convState', inputs.convState, batch * (K - 1) * C, ss);
      const y = float32(fn, 'out.y', out.y, batch * T * C, xs);
      const newState = float32(fn, 'out.newState', out.newState, batch * (K - 1) * C, ss);
      binding.causalConv1d(x, w, bias, state, batch, T, C, K, activation === 'silu', y, newState);
    },
    gatedRmsNorm(y, z, weight, rows, dim, groupSize, eps, out) {
      const fn = 'gatedRmsNorm';
      count(fn, 'rows', rows);
      count(fn, 'dim', dim);
      count(fn, 'groupSize', groupSize);
      if (groupSize === 0 || dim % groupSize !== 0)
        throw new RangeError(`${fn}: groupSize must be positive and divide dim = ${dim}, got ${groupSize}`);
      number(fn, 'eps', eps);
      const n = `rows * dim = ${rows} * ${dim}`;
      float32(fn, 'y', y, rows * dim, n);
      float32(fn, 'z', z, rows * dim, n);
      float32(fn, 'weight', weight, dim, 'dim');
      float32(fn, 'out', out, rows * dim, n);
      binding.gatedRmsNorm(y, z, weight, rows, dim, groupSize, eps, out);
    },
    swiglu(a, rows, inter, act) {
      const fn = 'swiglu';
      count(fn, 'rows', rows);
      count(fn, 'inter', inter);
      float32(fn, 'a', a, rows * 2 * inter, `rows * 2 * inter = ${rows} * 2 * ${inter}`);
      float32(fn, 'act', act, rows * inter, `rows * inter = ${rows} * ${inter}`);
      binding.swiglu(a, rows, inter, act);
    },
    moeExperts(inputFormat, inputLinear, outputFormat, outputLinear, x, dims, indices, weights, y) {
      const fn = 'moeExperts';
      const f1 = formatOf(fn, inputFormat),
        f2 = formatOf(fn, outputFormat);
      for (const [name, f] of [
        ['inputFormat', f1],
        ['outputFormat', f2],
      ] as const)
        if (f !== 'q8_0' && f !== 'q4_0') throw new RangeError(`${fn}: ${name} must be q8_0 or q4_0, got ${f}`);
      const n = count(fn, 'dims.n', dims.n),
        h = count(fn, 'dims.h', dims.h),
        inter = count(fn, 'dims.inter', dims.inter);
      const experts = count(fn, 'dims.experts', dims.experts),
        k = count(fn, 'dims.k', dims.k);
      blockCols(fn, 'dims.h', f1, h);
      blockCols(fn, 'dims.inter', f2, inter);
      packed(
        fn,
        'inputLinear',
        inputLinear,
        experts * 2 * inter * rowBytesOf(f1, h),
        `experts * 2 * inter rows of rowBytes('${f1}', ${h})`,
      );
      packed(fn, 'outputLinear', outputLinear, experts * h * rowBytesOf(f2, inter), `experts * h rows of rowBytes('${f2}', ${inter})`);
      float32(fn, 'x', x, n * h, `n * h = ${n} * ${h}`);
      if (!(indices instanceof Int32Array)) throw new TypeError(`${fn}: indices must be an Int32Array, got ${describe(indices)}`);
      if (indices.length !== n * k) throw new RangeError(`${fn}: indices must hold n * k = ${n * k} elements, got ${indices.length}`);
      for (let s = 0; s < indices.length; s++)
        if (!(indices[s] >= 0 && indices[s] < experts))
          throw new RangeError(`${fn}: indices[${Math.floor(s / k)}, ${s % k}] = ${indices[s]} is outside the ${experts} experts`);
      float32(fn, 'weights', weights, n * k, `n * k = ${n} * ${k}`);
      float32(fn, 'y', y, n * h, `n * h = ${n} * ${h}`);
      binding.moeExperts(f1, inputLinear, f2, outputLinear, x, n, h, inter, experts, k, indices, weights, y);
    },
    attention(q, k, v, keyMask, dims, options, out) {
      const fn = 'attention';
      const batch = count(fn, 'dims.batch', dims.batch),
        T = count(fn, 'dims.queryLength', dims.queryLength);
      const Hq = count(fn, 'dims.queryHeads', dims.queryHeads),
        Hkv = count(fn, 'dims.kvHeads', dims.kvHeads);
      const hd = count(fn, 'dims.headDim', dims.headDim),
        S = count(fn, 'dims.keyLength', dims.keyLength);
      const capacity = count(fn, 'dims.capacity', dims.capacity);
      if (Hkv === 0 || Hq % Hkv !== 0)
        throw new RangeError(`${fn}: dims.kvHeads must be positive and divide dims.queryHeads = ${Hq}, got ${Hkv}`);
      if (S > capacity) throw new RangeError(`${fn}: dims.keyLength (${S}) must be at most dims.capacity (${capacity})`);
      const causal = flag(fn, 'options.causal', options.causal);
      if (causal && S < T) throw new RangeError(`${fn}: causal attention needs dims.keyLength >= dims.queryLength, got ${S} < ${T}`);
      const scale = number(fn, 'options.scale', options.scale);
      const qs = `batch * queryLength * queryHeads * headDim = ${batch} * ${T} * ${Hq} * ${hd}`;
      const kvs = `batch * capacity * kvHeads * headDim = ${batch} * ${capacity} * ${Hkv} * ${hd}`; // either layout
      float32(fn, 'q', q, batch * T * Hq * hd, qs);
      float32(fn, 'k', k, batch * capacity * Hkv * hd, kvs);
      float32(fn, 'v', v, batch * capacity * Hkv * hd, kvs);
      const mask = keyMask === null ? null : float32(fn, 'keyMask', keyMask, batch * S, `batch * keyLength = ${batch} * ${S}`);
      float32(fn, 'out', out, batch * T * Hq * hd, qs);
      const headsMajor = flag(fn, 'options.headsMajor', options.headsMajor);
      binding.attention(q, k, v, mask, batch, T, Hq, Hkv, hd, S, capacity, causal, scale, out, headsMajor);
    },
    gemmF32(a, b, c, M, N, K, transposeA, transposeB, options = {}) {
      const fn = 'gemmF32';
      count(fn, 'M', M);
      count(fn, 'N', N);
      count(fn, 'K', K);
      const ta = flag(fn, 'transposeA', transposeA),
        tb = flag(fn, 'transposeB', transposeB);
      const batch = count(fn, 'options.batch', options.batch ?? 1);
      const strideA = count(fn, 'options.strideA', options.strideA ?? M * K);
      const strideB = count(fn, 'options.strideB', options.strideB ?? K * N);
      const strideC = count(fn, 'options.strideC', options.strideC ?? M * N);
      const accumulate = flag(fn, 'options.accumulate', options.accumulate);
      if (batch > 1 && strideC < M * N)
        throw new RangeError(
          `${fn}: options.strideC must be at least M * N = ${M * N} so that the batch's outputs do not overlap, got ${strideC}`,
        );
      const need = (stride: number, size: number) => (batch === 0 ? 0 : (batch - 1) * stride + size);
      const check = (name: string, v: unknown, n: number, shape: string) => {
        if (!(v instanceof Float32Array)) throw new TypeError(`${fn}: ${name} must be a Float32Array, got ${describe(v)}`);
        if (v.length < n) throw new RangeError(`${fn}: ${name} must hold at least ${n} elements (${shape}), got ${v.length}`);
      };
      check(
        'a',
        a,
        need(strideA, M * K),
        `batch ${batch} of ${ta ? 'K x M' : 'M x K'} = ${ta ? `${K} x ${M}` : `${M} x ${K}`}, strideA ${strideA}`,
      );
      check(
        'b',
        b,
        need(strideB, K * N),
        `batch ${batch} of ${tb ? 'N x K' : 'K x N'} = ${tb ? `${N} x ${K}` : `${K} x ${N}`}, strideB ${strideB}`,
      );
      check('c', c, need(strideC, M * N), `batch ${batch} of M x N = ${M} x ${N}, strideC ${strideC}`);
      binding.gemmF32(a, b, c, M, N, K, ta, tb, batch, strideA, strideB, strideC, accumulate);
    },
    setThreads(n) {
      count('setThreads', 'n', n);
      if (n < 1 || n > MAX_THREADS) throw new RangeError(`setThreads: n must be between 1 and ${MAX_THREADS}, got ${n}`);
      binding.setThreads(n);
    },
    threads: () => binding.threads(),
    mmapFile(filePath, options = {}) {
      const fn = 'mmapFile';
      if (typeof filePath !== 'string' || filePath === '')
        throw new TypeError(`${fn}: path must be a non-empty string, got ${describe(filePath)}`);
      const offset = count(fn, 'options.offset', options.offset ?? 0);
      const length = options.length === undefined ? undefined : count(fn, 'options.length', options.length);
      const advice = options.advice ?? 'normal';
      if (!['normal', 'sequential', 'random', 'willneed'].includes(advice))
        throw new RangeError(`${fn}: options.advice must be one of normal, sequential, random, willneed, got ${describe(advice)}`);
      const resolved = path.resolve(filePath);
      // V8 caps one ArrayBuffer (4 GiB on Node 20): a larger mapping cannot be handed to JS at all.
      let size: number | undefined;
      try {
        size = fs.statSync(resolved).size;
      } catch {
        size = undefined; // the binding names the open/stat error
      }
      const mapped = length ?? (size === undefined ? 0 : size - offset);
      if (mapped > bufferConstants.MAX_LENGTH) {
        throw new RangeError(
          `${fn}: cannot map ${mapped} bytes of '${resolved}' at once; this Node.js allows at most ` +
            `${bufferConstants.MAX_LENGTH} bytes in one ArrayBuffer (map it in pieces with options.offset / options.length)`,
        );
      }
      return binding.mmapFile(resolved, offset, length, advice, flag(fn, 'options.writable', options.writable));
    },
    cpuFeatures: () => binding.cpuFeatures(),
    cpuLevel: () => binding.cpuLevel() as Level,
    kernelLevel(kernel) {
      if (typeof kernel !== 'string' || !(KERNELS as readonly string[]).includes(kernel))
        throw new RangeError(`kernelLevel: kernel must be one of ${KERNELS.join(', ')}, got ${describe(kernel)}`);
      return binding.kernelLevel(kernel) as Level;
    },
    setLevel(level) {
      binding.setLevel(levelOf('setLevel', level));
    },
    level: () => binding.levelCap() as Level,
    counters: () => binding.counters() as Record<KernelName, Record<Level, number>>,
    resetCounters: () => binding.resetCounters(),
  };
  return native;
}

/** Threads from GRANITEFLOW_THREADS, else every available CPU. */
function threadsFromEnv(): number {
  const raw = process.env.GRANITEFLOW_THREADS;
  if (raw === undefined || raw.trim() === '') return Math.min(MAX_THREADS, os.availableParallelism());
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS)
    throw new RangeError(`GRANITEFLOW_THREADS must be an integer between 1 and ${MAX_THREADS}, got '${raw}'`);
  return n;
}

/**
 * The native kernels, or null when they cannot be used here (GRANITEFLOW_NATIVE=0, or no binary
 * for this platform / Node): {@link nativeUnavailableReason} then says why. Loads once; applies
 * GRANITEFLOW_THREADS and GRANITEFLOW_NATIVE_LEVEL (invalid values throw a RangeError).
 */
export function loadNative(): Native | null {
  if (loaded !== undefined) return loaded;
  if (process.env.GRANITEFLOW_NATIVE === '0') {
    unavailableReason = 'disabled by GRANITEFLOW_NATIVE=0';
    return (loaded = null);
  }
  let binaryPath: string;
  let binding: Binding;
  try {
    binaryPath = nodeGypBuild.resolve(PACKAGE_ROOT);
    binding = require(binaryPath) as Binding;
  } catch (error) {
    const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
    unavailableReason =
      `no usable @graniteflow/native binary for ${process.platform}-${process.arch} ` +
      `(looked for build/Release and prebuilds/ under ${PACKAGE_ROOT}; build it with ` +
      `\`npm run build -w @graniteflow/native\`): ${detail}`;
    return (loaded = null);
  }
  const native = wrap(binding, binaryPath);
  native.setThreads(threadsFromEnv());
  const level = process.env.GRANITEFLOW_NATIVE_LEVEL;
  if (level !== undefined && level.trim() !== '') {
    if (!(LEVELS as readonly string[]).includes(level))
      throw new RangeError(`GRANITEFLOW_NATIVE_LEVEL must be one of ${LEVELS.join(', ')}, got '${level}'`);
    native.setLevel(level as Level);
  }
  unavailableReason = undefined;
  return (loaded = native);
}

/** Why {@link loadNative} returned null (undefined when it loaded or was not tried). */
export function nativeUnavailableReason(): string | undefined {
  return unavailableReason;
}

export function isNativeAvailable(): boolean {
  return loadNative() !== null;
}

/** {@link loadNative}, throwing an Error with the reason when the kernels are unavailable. */
export function requireNative(): Native {
  const native = loadNative();
  if (!native) throw new Error(`@graniteflow/native is unavailable: ${unavailableReason}`);
  return native;
}
