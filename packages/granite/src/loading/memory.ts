import * as os from 'node:os';
import { isBackendAvailable, packedByteLength, WEIGHT_DTYPES, type WeightDtype } from '@graniteflow/core';
import { familyOf } from '../models';
import type { CausalLMConfig } from '../models/causal_lm';
import { DEFAULT_PREFILL_CHUNK } from '../generation/generate';
import { checkWeightDtype, mainDtype, planBase, resolvePlan, storedDtypesOf, type WeightPolicyOptions } from './weight_policy';

/**
 * What a model needs in memory, in bytes: weights as the dtype policy holds them (packed ones at
 * their format's size, the rest float32), plus the float32 caches (tfjs computes in float32).
 */
export interface MemoryEstimate {
  parameters: number;
  /** Parameters used per token: all but the routed experts not chosen. */
  activeParameters: number;
  /** The requested dtype of the packed weights (held as stored: the packed checkpoint's main format). */
  dtype: WeightDtype;
  /**
   * Of {@link MemoryEstimate.weightBytes}, the packed weights held as a memory-mapped checkpoint
   * stores them: pages of the file's page cache, not the heap. Still counted: once a weight has
   * been used its pages stay resident like any memory (the kernel may drop them under pressure, and
   * reads them back from disk on the next use).
   */
  mappedWeightBytes: number;
  /** Parameters held packed at {@link MemoryEstimate.dtype} (or an override's dtype); the rest are float32. */
  packedParameters: number;
  weightBytes: number;
  /** {@link MemoryEstimate.weightBytes} had the model been asked for each dtype (same overrides). */
  weightBytesByDtype: Record<WeightDtype, number>;
  /** The fixed-size state of one sequence (Mamba conv + SSM states; 0 without Mamba layers). */
  stateBytesPerSequence: number;
  /** Attention keys and values of one token of one sequence. */
  kvBytesPerToken: number;
  contextLength: number;
  batchSize: number;
  /** Tokens per prefill chunk the activations are budgeted for. */
  prefillChunk: number;
  /**
   * Float32 activations of one prefill chunk of every sequence in the widest layer (residual
   * stream, projections, the Mamba scan's inputs, the MLP's hidden units), plus one logits row
   * per sequence: the working memory on top of weights and caches. Attention adds nothing of the
   * context's size: its kernel never holds the [chunk, context] scores.
   */
  activationBytes: number;
  /** weights + state + KV for the context and batch + one chunk's activations. */
  totalBytes: number;
  /** Weights the policy keeps float32 against the dtype, and why (see `planWeightDtypes`). */
  notes: string[];
}

/** All parameters and those used per token, by arithmetic from the config (see the family's `ModelSizing`). */
export function countParameters(cfg: CausalLMConfig): { total: number; active: number } {
  return familyOf(cfg).sizing(cfg).parameters();
}

/**
 * Every parameter's name and checkpoint shape, by formula, in the order of the model's module
 * tree (the tests check that both agree on every preset). The dtype policy is planned over these,
 * so a memory estimate needs no model.
 */
export function parameterShapes(cfg: CausalLMConfig): [string, number[]][] {
  return familyOf(cfg).sizing(cfg).parameterShapes();
}

/** Bytes of a weight of `shape` held as `dtype`. */
export function bytesOfWeight(dtype: WeightDtype, shape: readonly number[]): number {
  return dtype === 'f32' ? 4 * shape.reduce((a, b) => a * b, 1) : packedByteLength(dtype, shape);
}

/** Options of {@link estimateMemory}. */
export interface EstimateMemoryOptions extends WeightPolicyOptions {
  /** Tokens of context budgeted for KV cache (default 4096). */
  contextLength?: number;
  /** Sequences budgeted for (default 1). */
  batchSize?: number;
  /** The packed weights held as stored are mapped from the checkpoint (see {@link MemoryEstimate.mappedWeightBytes}). */
  mapped?: boolean;
  /** Tokens per prefill chunk (default `DEFAULT_PREFILL_CHUNK`, 512), for {@link MemoryEstimate.activationBytes}. */
  prefillChunk?: number;
}

/** Float32 values per token alive at once inside the widest layer of a forward pass (see the family's `ModelSizing`). */
export function activationFloatsPerToken(cfg: CausalLMConfig): number {
  return familyOf(cfg).sizing(cfg).activationFloatsPerToken();
}

/** Memory for the weights at `dtype` (policy and overrides applied) plus caches of `batchSize` sequences of `contextLength` tokens. */
export function estimateMemory(cfg: CausalLMConfig, options: EstimateMemoryOptions = {}): MemoryEstimate {
  const { contextLength = 4096, batchSize = 1, prefillChunk = DEFAULT_PREFILL_CHUNK } = options;
  const sizing = familyOf(cfg).sizing(cfg);
  const { total, active } = sizing.parameters();
  const stateFloats = sizing.stateFloatsPerSequence();
  const kvFloats = sizing.kvFloatsPerToken();
  // Overrides and stored dtypes may name single layers; the policy alone treats every layer of a kind alike.
  const overrides = options.dtypeOverrides;
  const perName = overrides !== undefined || options.storedDtypes !== undefined;
  const { shapes, counts } = perName ? { shapes: sizing.parameterShapes(), counts: undefined } : sizing.parameterGroups();
  const base = planBase(shapes, overrides);
  const stored = options.dtype === undefined ? storedDtypesOf(base, options.storedDtypes) : undefined;
  const dtype = stored !== undefined ? mainDtype(base.shapes, stored) : checkWeightDtype(options.dtype ?? 'f32');
  const sizes = base.shapes.map((shape, i) => (counts?.[i] ?? 1) * shape.reduce((a, b) => a * b, 1));
  const bytesHeld = (held: WeightDtype, i: number) =>
    held === 'f32' ? 4 * sizes[i] : (counts?.[i] ?? 1) * packedByteLength(held, base.shapes[i]);
  const weightBytesByDtype = {} as Record<WeightDtype, number>;
  let packedParameters = 0;
  let mappedWeightBytes = 0;
  let notes: string[] = [];
  for (const d of WEIGHT_DTYPES) {
    // Held as stored at the checkpoint's own dtype; any other dtype repacks.
    const asStored = d === dtype ? stored : undefined;
    const plan = resolvePlan(base, d, asStored);
    weightBytesByDtype[d] = plan.held.reduce((n, held, i) => n + bytesHeld(held, i), 0);
    if (d === dtype) {
      packedParameters = sizes.reduce((n, size, i) => n + (plan.held[i] === 'f32' ? 0 : size), 0);
      notes = plan.notes;
      const storedAt = stored ?? storedDtypesOf(base, options.storedDtypes);
      if (options.mapped && storedAt !== undefined) {
        mappedWeightBytes = plan.held.reduce((n, held, i) => n + (held !== 'f32' && held === storedAt[i] ? bytesHeld(held, i) : 0), 0);
      }
    }
  }
  const stateBytesPerSequence = 4 * stateFloats;
  const kvBytesPerToken = 4 * kvFloats;
  const weights = weightBytesByDtype[dtype];
  // A prompt shorter than a chunk is one chunk of its own length at most.
  const activationBytes = 4 * batchSize * (Math.min(prefillChunk, contextLength) * sizing.activationFloatsPerToken() + cfg.vocab_size);
  return {
    parameters: total,
    activeParameters: active,
    dtype,
    packedParameters,
    mappedWeightBytes,
    weightBytes: weights,
    weightBytesByDtype,
    stateBytesPerSequence,
    kvBytesPerToken,
    contextLength,
    batchSize,
    prefillChunk,
    activationBytes,
    totalBytes: weights + cacheBytes({ stateBytesPerSequence, kvBytesPerToken, contextLength, batchSize }) + activationBytes,
    notes,
  };
}

function cacheBytes(e: Pick<MemoryEstimate, 'stateBytesPerSequence' | 'kvBytesPerToken' | 'contextLength' | 'batchSize'>): number {
  return e.batchSize * (e.stateBytesPerSequence + e.contextLength * e.kvBytesPerToken);
}

/** {@link MemoryEstimate.totalBytes} had the weights been held at `dtype`. */
export function totalBytesAt(estimate: MemoryEstimate, dtype: WeightDtype): number {
  return estimate.weightBytesByDtype[dtype] + cacheBytes(estimate) + estimate.activationBytes;
}

/**
 * The wasm heap stops at 4 GiB (WebAssembly memory is addressed with 32-bit offsets); about 3 GiB
 * of tensors fit in it in practice, as measured.
 */
export const WASM_TENSOR_BUDGET = 3 * 1024 ** 3;

/**
 * Of the machine's memory, the share the host-memory backends (native, cpu, tensorflow) may plan
 * to fill with weights and caches: the rest is for the system, Node itself and the activations.
 */
export const HOST_MEMORY_FRACTION = 0.8;

/** What a backend can hold. */
export interface BackendMemoryLimit {
  bytes: number;
  /** For messages: "its heap stops at 4 GiB, …" */
  description: string;
}

/** The most a model's estimate may be on `backend`, on a machine of `machineBytes` of memory. */
export function backendMemoryLimit(backend: string, machineBytes: number = os.totalmem()): BackendMemoryLimit {
  if (backend === 'wasm') {
    return { bytes: WASM_TENSOR_BUDGET, description: `its heap stops at 4 GiB, about ${formatBytes(WASM_TENSOR_BUDGET)} of tensors` };
  }
  const bytes = Math.floor(HOST_MEMORY_FRACTION * machineBytes);
  return {
    bytes,
    description: `${Math.round(100 * HOST_MEMORY_FRACTION)}% of this machine's ${formatBytes(machineBytes)} of memory, ${formatBytes(bytes)}`,
  };
}

/** Whether `estimate` fits `backend` on a machine of `machineBytes` (free memory aside). */
export function fitsBackend(estimate: MemoryEstimate, backend: string, machineBytes: number = os.totalmem()): boolean {
  return estimate.totalBytes <= backendMemoryLimit(backend, machineBytes).bytes;
}
/** Thrown before loading when a model cannot fit; the message says what to do instead. */
export class InsufficientMemoryError extends Error {
  override name = 'InsufficientMemoryError';

  constructor(
    message: string,
    readonly estimate: MemoryEstimate,
  ) {
    super(message);
  }
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
/** Sizes from here on print as "over 1024 EiB": no machine has them, and the digits would mean nothing. */
const LARGEST_PRINTED_BYTES = 1024 ** BYTE_UNITS.length;

/** A byte count for people: `512 B`, `3.2 GiB`; never `Infinity` or `NaN`. */
export function formatBytes(n: number): string {
  if (Number.isNaN(n)) return 'an unknown size';
  if (n >= LARGEST_PRINTED_BYTES) return `over 1024 ${BYTE_UNITS[BYTE_UNITS.length - 1]}`;
  let i = 0;
  while (n >= 1024 && i < BYTE_UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${BYTE_UNITS[i]}`;
}

/** The dtypes from the most precise (and largest) down. */
const DTYPES_BY_SIZE: readonly WeightDtype[] = ['f32', 'bf16', 'q8_0', 'q4_0'];

function billions(n: number): string {
  return `${(n / 1e9).toFixed(2)} B`;
}

/** "12.0 GiB of weights (…) + 96.0 MiB of state and KV cache for 1 × 4096 tokens" */
function describeEstimate(e: MemoryEstimate): string {
  const weights =
    e.packedParameters === 0
      ? `${formatBytes(e.weightBytes)} of float32 weights (${billions(e.parameters)} parameters)`
      : `${formatBytes(e.weightBytes)} of weights (${billions(e.parameters)} parameters, ${billions(e.packedParameters)} of them packed, the rest float32` +
        `${e.mappedWeightBytes > 0 ? `; ${formatBytes(e.mappedWeightBytes)} of them mapped from the checkpoint, resident once used` : ''})`;
  return (
    `${weights} + ${formatBytes(e.totalBytes - e.weightBytes - e.activationBytes)} of state and KV cache for ${e.batchSize} × ${e.contextLength} tokens` +
    ` + ${formatBytes(e.activationBytes)} of activations for a prefill chunk of ${Math.min(e.prefillChunk, e.contextLength)} tokens`
  );
}

/**
 * Refuses, with the reason and a fix, a model whose estimate exceeds what `backend` can hold: the
 * wasm heap, or {@link HOST_MEMORY_FRACTION} of the machine's memory for the others. The fix names
 * the most precise smaller dtype that fits, and the host-memory backends when wasm is too small.
 * Returns a warning (without refusing) when the model fits the machine but not its free memory now.
 */
export function assertFitsInMemory(
  estimate: MemoryEstimate,
  backend: string,
  freeBytes: number = os.freemem(),
  machineBytes: number = os.totalmem(),
): string | undefined {
  const need = formatBytes(estimate.totalBytes);
  const dtype = estimate.dtype;
  const limit = backendMemoryLimit(backend, machineBytes);
  if (estimate.totalBytes > limit.bytes) {
    const advice: string[] = [];
    const smaller = DTYPES_BY_SIZE.slice(DTYPES_BY_SIZE.indexOf(dtype) + 1).find((d) => totalBytesAt(estimate, d) <= limit.bytes);
    if (smaller !== undefined) {
      advice.push(
        `At dtype ${smaller} it needs about ${formatBytes(totalBytesAt(estimate, smaller))}, which fits: load it with dtype '${smaller}' (--dtype ${smaller}).`,
      );
    }
    const host = backendMemoryLimit('cpu', machineBytes);
    if (backend === 'wasm' && estimate.totalBytes <= host.bytes) {
      const backends = isBackendAvailable('native')
        ? 'the native backend (--backend native) or the cpu backend (--backend cpu)'
        : 'the cpu backend (--backend cpu, or GRANITEFLOW_BACKEND=cpu; install @graniteflow/native for the faster native backend)';
      advice.push(`At ${dtype} it fits ${backends}, which may use up to ${formatBytes(host.bytes)} of this machine's memory.`);
    }
    if (advice.length === 0) {
      advice.push(
        `Even at q4_0 it needs about ${formatBytes(totalBytesAt(estimate, 'q4_0'))}: choose a smaller model, lower the context length, or use a machine with more memory.`,
      );
    }
    throw new InsufficientMemoryError(
      `This model at dtype ${dtype} needs about ${need} (${describeEstimate(estimate)}), more than the ${backend} backend can hold (${limit.description}). ${advice.join(' ')}`,
      estimate,
    );
  }
  if (estimate.totalBytes > freeBytes) {
    return (
      `This model at dtype ${dtype} needs about ${need} but only ${formatBytes(freeBytes)} of this machine's ${formatBytes(machineBytes)} of memory is free now: ` +
      'loading may swap, or the system may stop the process. Close other programs, or choose a smaller dtype.'
    );
  }
  return undefined;
}
