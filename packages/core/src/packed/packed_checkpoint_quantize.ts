/**
 * Quantizing a float checkpoint into a packed one, streaming: each source tensor is read, widened
 * and packed a few rows at a time while its packed bytes are written, so memory stays at a few
 * megabytes however large the model.
 */
import { nativeAddon } from '../native/native_addon';
import type { Checkpoint } from '../safetensors/checkpoint';
import { decodeFloatsInto, DTYPE_BYTES, isFloatDtype, type FloatDtype, type SafetensorsDtype } from '../safetensors/dtypes';
import { SafetensorsError } from '../safetensors/errors';
import { canPackRows, isWeightDtype, packedByteLength, packedRowBytes, QUANT_BLOCK, type PackedFormat, type WeightDtype } from './formats';
import { writePackedCheckpoint, type PackedCheckpointTensor, type WritePackedCheckpointOptions } from './packed_checkpoint';
import { quantizeRowsInto } from './quantize';

/**
 * What a tensor is held as in the packed checkpoint: `'f32'` keeps it a plain tensor in its source
 * dtype (bytes copied as they are); a packed format packs it. Called with the tensor's name, its
 * shape and its source dtype.
 */
export type WeightPolicy = (name: string, shape: readonly number[], sourceDtype: SafetensorsDtype) => WeightDtype;

/** Options of {@link quantizeCheckpoint}. */
export interface QuantizeCheckpointOptions extends Omit<WritePackedCheckpointOptions, 'onProgress'> {
  /** Which tensors are packed, and how. */
  policy: WeightPolicy;
  /** Called as bytes are written. */
  onProgress?: (progress: { tensor: string; writtenBytes: number; totalBytes: number }) => void;
}

/** What {@link quantizeCheckpoint} wrote. */
export interface QuantizeCheckpointResult {
  /** File names written into the folder, index last. */
  files: string[];
  /** Tensors packed, by format. */
  packed: Partial<Record<PackedFormat, number>>;
  /** Tensors kept as plain tensors. */
  kept: number;
  /** Bytes of tensor data written. */
  totalBytes: number;
}

/** Weights widened and packed at a time: 4 MiB of float32. */
const PIECE_WEIGHTS = 1 << 20;

/** Buffers the packing of every tensor shares: one allocation per checkpoint, not one per tensor. */
class Scratch {
  private raw = new Uint8Array(0);
  private floats = new Float32Array(0);

  bytes(n: number): Uint8Array {
    if (this.raw.length < n) this.raw = new Uint8Array(n);
    return this.raw.subarray(0, n);
  }

  values(n: number): Float32Array {
    if (this.floats.length < n) this.floats = new Float32Array(n);
    return this.floats.subarray(0, n);
  }
}

/** `fill` for a tensor packed from a float source: reads, widens and packs whole rows. */
function packingFill(source: Checkpoint, name: string, sourceDtype: FloatDtype, format: PackedFormat, cols: number, scratch: Scratch) {
  const rowBytes = packedRowBytes(format, cols);
  const sourceRowBytes = cols * DTYPE_BYTES[sourceDtype];
  const pieceRows = Math.max(1, Math.floor(PIECE_WEIGHTS / cols));
  const addon = nativeAddon();
  return (dst: Uint8Array, offset: number): void => {
    const firstRow = offset / rowBytes;
    const rows = dst.length / rowBytes;
    for (let r = 0; r < rows; r += pieceRows) {
      const n = Math.min(pieceRows, rows - r);
      const bytes = scratch.bytes(n * sourceRowBytes);
      source.readBytesInto(name, bytes, (firstRow + r) * sourceRowBytes);
      const values = scratch.values(n * cols);
      decodeFloatsInto(sourceDtype, bytes, values);
      const out = dst.subarray(r * rowBytes, (r + n) * rowBytes);
      // The native quantizers are ggml's reference ones bit for bit, only faster.
      if (addon !== null) addon.quantize(format, values, n, cols, out);
      else quantizeRowsInto(format, values, n, cols, out);
    }
  };
}

/** What {@link quantizeCheckpoint} will write, worked out from the headers alone. */
export interface QuantizationPlan {
  /** The tensors to write, in the source's order. */
  tensors: PackedCheckpointTensor[];
  /** Tensors packed, by format. */
  packed: Partial<Record<PackedFormat, number>>;
  /** Tensors kept as plain tensors. */
  kept: number;
  /** Bytes of tensor data the packed checkpoint holds. */
  totalBytes: number;
}

/**
 * Decides, from `source`'s headers and `policy`, what each tensor becomes (see
 * {@link quantizeCheckpoint}); nothing is read or written. Throws a {@link SafetensorsError} naming
 * the tensor when the policy asks for something the tensor cannot be (a packed non-float tensor,
 * rows that are not whole 32-weight blocks), or when the source is already packed.
 */
export function planQuantization(source: Checkpoint, policy: WeightPolicy): QuantizationPlan {
  const packed: Partial<Record<PackedFormat, number>> = {};
  let kept = 0;
  let totalBytes = 0;
  const tensors: PackedCheckpointTensor[] = [];
  const scratch = new Scratch();
  for (const name of source.names()) {
    const info = source.info(name);
    if (info.packed !== undefined) {
      throw new SafetensorsError(
        info.file,
        `is already packed as ${info.packed.format}: quantize from the original float checkpoint instead`,
        name,
      );
    }
    const target = policy(name, info.shape, info.dtype);
    if (!isWeightDtype(target)) {
      throw new SafetensorsError(info.file, `the weight policy gave ${JSON.stringify(target)}, not one of f32, bf16, q8_0, q4_0`, name);
    }
    const copy = (dtype: PackedFormat | SafetensorsDtype): PackedCheckpointTensor => ({
      name,
      dtype,
      shape: info.shape,
      fill: (dst, offset) => source.readBytesInto(name, dst, offset),
    });
    if (target === 'f32') {
      tensors.push(copy(info.dtype));
      totalBytes += info.byteLength;
      kept++;
      continue;
    }
    const cols = info.shape[info.shape.length - 1];
    if (!isFloatDtype(info.dtype)) {
      throw new SafetensorsError(info.file, `is ${info.dtype}; only float tensors can be packed as ${target}`, name);
    }
    if (info.shape.length === 0 || !canPackRows(target, cols) || info.shape.some((d) => d === 0)) {
      throw new SafetensorsError(
        info.file,
        `cannot be packed as ${target}: shape [${info.shape}] does not end in rows of whole ${target === 'bf16' ? 'weights' : `${QUANT_BLOCK}-weight blocks`}`,
        name,
      );
    }
    tensors.push(
      target === 'bf16' && info.dtype === 'BF16'
        ? copy('bf16')
        : { name, dtype: target, shape: info.shape, fill: packingFill(source, name, info.dtype, target, cols, scratch) },
    );
    totalBytes += packedByteLength(target, info.shape);
    packed[target] = (packed[target] ?? 0) + 1;
  }
  return { tensors, packed, kept, totalBytes };
}

/**
 * Writes a packed checkpoint of `source` into the existing folder `outDir` (see
 * {@link writePackedCheckpoint} for the files): every tensor in `source`'s order, packed in the
 * format `policy` gives it or copied as it is. A BF16 / F16 / F32 source tensor is read, widened to
 * float32 and packed a piece at a time (ggml's reference quantizers, bit for bit: through
 * `@graniteflow/native` when it loads, else in JavaScript); bf16 from a BF16 source is its bytes.
 * Fails as {@link planQuantization} does before writing anything.
 */
export async function quantizeCheckpoint(
  source: Checkpoint,
  outDir: string,
  options: QuantizeCheckpointOptions,
): Promise<QuantizeCheckpointResult> {
  const { policy, ...writeOptions } = options;
  const { tensors, packed, kept, totalBytes } = planQuantization(source, policy);
  const files = await writePackedCheckpoint(outDir, tensors, writeOptions);
  return { files, packed, kept, totalBytes };
}
