import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  INDEX_FILE,
  nativeAddon,
  packedRowBytes,
  quantizeRowsInto,
  SINGLE_FILE,
  writePackedCheckpoint,
  writeSafetensors,
  type PackedCheckpointTensor,
  type PackedFormat,
  type WritableTensor,
} from '@graniteflow/core';
import { createPrng } from '../generation/prng';
import type { CausalLMConfig } from '../models/causal_lm';
import { parameterShapes } from './memory';
import { planWeightDtypes, type WeightDtypeOverrides } from './weight_policy';
import { configJson } from './save_checkpoint';

/** Options of {@link writeRandomCheckpoint}. */
export interface RandomCheckpointOptions {
  seed?: number;
  /** Storage dtype of the weights (default BF16, as the released checkpoints). */
  dtype?: 'F32' | 'BF16';
  /** Start a new shard (with an index file) once a shard reaches this many bytes (default 2 GB). */
  maxShardBytes?: number;
  /** Standard deviation of the linear and embedding weights, drawn uniformly (default 0.02). */
  std?: number;
}

/**
 * Hugging Face's initialisation of the parameters that are not plain N(0, std)
 * (model guide: A freshly initialised model).
 */
function initialValue(name: string, shape: readonly number[], index: number): number | undefined {
  if (name.endsWith('.A_log')) return Math.log(index + 1);
  if (name.endsWith('.dt_bias') || name.endsWith('.D')) return 1;
  if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight')) return 1;
  if (name.endsWith('.bias')) return 0;
  void shape;
  return undefined;
}

/**
 * Writes a Hugging Face–layout checkpoint folder (config.json, safetensors, index when sharded) of
 * a config with random weights: for tests and benchmarks at real layer shapes without downloading.
 * Tensors are generated and written shard by shard, so memory stays near one shard.
 */
export function writeRandomCheckpoint(dir: string, config: CausalLMConfig, options: RandomCheckpointOptions = {}): void {
  const { seed = 0, dtype = 'BF16', maxShardBytes = 2e9, std = 0.02 } = options;
  const rng = createPrng(seed);
  // Uniform on [−√3·std, √3·std] has standard deviation std, at one draw per weight (benchmark
  // checkpoints hold billions).
  const halfWidth = Math.sqrt(3) * std;
  fs.mkdirSync(dir, { recursive: true });
  // Names and shapes by arithmetic, in the model's order: building the model to list them would
  // hold every weight in float32 (27.6 GB for H-Tiny, more than the machine).
  const shapes = parameterShapes(config);
  const bytesPer = dtype === 'F32' ? 4 : 2;
  // Only the shard being filled is held: a written one is dropped (its float32 data is the bulk).
  let shard = new Map<string, WritableTensor>();
  const shardFiles: string[] = [];
  const weightMap: Record<string, string> = {};
  let shardBytes = 0;
  let total = 0;
  const flush = (final: boolean) => {
    const name = `model-${shardFiles.length + 1}.safetensors`;
    writeSafetensors(path.join(dir, name), shard, { metadata: { format: 'pt' } });
    shardFiles.push(name);
    if (!final) shard = new Map();
    shardBytes = 0;
  };
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const fixed = initialValue(name, shape, 0) !== undefined;
    for (let i = 0; i < data.length; i++) {
      data[i] = fixed ? initialValue(name, shape, i % shape[0])! : halfWidth * (2 * rng.nextFloat() - 1);
    }
    const bytes = data.length * bytesPer;
    if (shardBytes > 0 && shardBytes + bytes > maxShardBytes) flush(false);
    shard.set(name, { shape: [...shape], data, dtype });
    weightMap[name] = `model-${shardFiles.length + 1}.safetensors`;
    shardBytes += bytes;
    total += bytes;
  }
  flush(true);
  const count = shardFiles.length;
  const finalName = (i: number) =>
    count === 1 ? SINGLE_FILE : `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
  shardFiles.forEach((f, i) => fs.renameSync(path.join(dir, f), path.join(dir, finalName(i))));
  if (count > 1) {
    for (const k of Object.keys(weightMap)) weightMap[k] = finalName(Number(/model-(\d+)/.exec(weightMap[k])![1]) - 1);
    fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  writeConfig(dir, config);
}

function writeConfig(dir: string, config: CausalLMConfig): void {
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson(config), null, 2));
}

/** Options of {@link writeRandomPackedCheckpoint}. */
export interface RandomPackedCheckpointOptions {
  /** The format of the weights the dtype policy packs (see `PACKED_WEIGHTS`), as `graniteflow quantize --dtype` would. */
  format: PackedFormat;
  /** Per-weight exceptions to the policy, as for `fromPretrained`. */
  dtypeOverrides?: WeightDtypeOverrides;
  seed?: number;
  /** Storage dtype of the tensors left unpacked (default BF16, as the released checkpoints). */
  dtype?: 'F32' | 'BF16';
  /** Start a new shard before a shard's data would exceed this many bytes (default 4 GB: each shard maps as one buffer). */
  maxShardBytes?: number;
  /** Standard deviation of the linear and embedding weights, drawn uniformly (default 0.02). */
  std?: number;
  onProgress?: (progress: { tensor: string; writtenBytes: number; totalBytes: number }) => void;
  signal?: AbortSignal;
}

const imul = Math.imul;

/**
 * `count` draws uniform on [−halfWidth, halfWidth) into `out` from `start`: mulberry32 (as
 * `createPrng`) from `state`, inlined with a local `imul` (benchmark checkpoints hold billions of
 * weights, and a global lookup a draw is slow in a vm context such as jest's).
 */
function drawUniform(state: number, halfWidth: number, out: Float32Array, start: number, count: number): void {
  const scale = (2 * halfWidth) / 2 ** 32;
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    out[start + i] = ((t ^ (t >>> 14)) >>> 0) * scale - halfWidth;
  }
}

/** Weights drawn and packed at a time: 4 MiB of float32. */
const PIECE_WEIGHTS = 1 << 20;

/**
 * Writes a packed checkpoint folder (config.json, packed safetensors, index when sharded; the
 * layout `graniteflow quantize` writes) of a config with random weights, drawn and packed a few
 * rows at a time straight into the file: memory stays at a few megabytes whatever the size, and
 * no float checkpoint is ever written (an H-Small q4_0 test checkpoint is 18 GB on disk, without
 * the 64 GB BF16 stage quantizing would need). Every row is drawn from its own seed, so the values
 * do not depend on the order the writer fills tensors in; they are not those
 * {@link writeRandomCheckpoint} draws for the same seed. Nothing is left behind on error.
 *
 * @returns the files written, index last (config.json aside)
 */
export async function writeRandomPackedCheckpoint(
  dir: string,
  config: CausalLMConfig,
  options: RandomPackedCheckpointOptions,
): Promise<string[]> {
  const { format, seed = 0, dtype = 'BF16', std = 0.02 } = options;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative safe integer, got ${seed}.`);
  const halfWidth = Math.sqrt(3) * std;
  const shapes = parameterShapes(config);
  const plan = planWeightDtypes(shapes, { dtype: format, dtypeOverrides: options.dtypeOverrides });
  const addon = nativeAddon();
  let scratch = new Float32Array(0);
  const values = (n: number) => (scratch.length >= n ? scratch : (scratch = new Float32Array(n))).subarray(0, n);
  const tensors: PackedCheckpointTensor[] = shapes.map(([name, shape], index) => {
    const held = plan.dtypes.get(name) ?? 'f32';
    const cols = shape[shape.length - 1];
    const fixed = initialValue(name, shape, 0) !== undefined;
    /** Rows [first, first + count) of the tensor, row-major, into `out`. */
    const draw = (first: number, count: number, out: Float32Array) => {
      for (let r = 0; r < count; r++) {
        const row = first + r;
        const base = r * cols;
        if (fixed) {
          for (let c = 0; c < cols; c++) out[base + c] = initialValue(name, shape, (row * cols + c) % shape[0])!;
          continue;
        }
        // One stream a row: seed, tensor and row folded into one safe integer.
        drawUniform(
          createPrng(((seed * 65_537 + index) * 2 ** 24 + row) % Number.MAX_SAFE_INTEGER).nextUint32(),
          halfWidth,
          out,
          base,
          cols,
        );
      }
    };
    const target = held === 'f32' ? (dtype === 'BF16' ? 'bf16' : 'f32') : held;
    const rowBytes = packedRowBytes(target, cols);
    const pieceRows = Math.max(1, Math.floor(PIECE_WEIGHTS / cols));
    const fill = (dst: Uint8Array, offset: number) => {
      const firstRow = offset / rowBytes;
      const rows = dst.length / rowBytes;
      for (let r = 0; r < rows; r += pieceRows) {
        const n = Math.min(pieceRows, rows - r);
        const floats = values(n * cols);
        draw(firstRow + r, n, floats);
        const out = dst.subarray(r * rowBytes, (r + n) * rowBytes);
        if (target === 'f32') out.set(new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength));
        else if (addon !== null && target !== 'bf16') addon.quantize(target, floats, n, cols, out);
        else quantizeRowsInto(target, floats, n, cols, out);
      }
    };
    return { name, dtype: held === 'f32' ? dtype : held, shape, fill };
  });
  fs.mkdirSync(dir, { recursive: true });
  const files = await writePackedCheckpoint(dir, tensors, {
    maxShardBytes: options.maxShardBytes,
    metadata: { format: 'pt' },
    onProgress: options.onProgress,
    signal: options.signal,
  });
  writeConfig(dir, config);
  return files;
}
