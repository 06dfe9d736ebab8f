/**
 * Writing graniteflow packed checkpoints: safetensors files whose packed weights are stored as
 * their GGUF block rows, described by `__metadata__` (see `safetensors/packed_metadata.ts` and the
 * core README, "Packed checkpoints"), streamed tensor by tensor.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from '../safetensors/checkpoint';
import { DTYPE_BYTES, isSafetensorsDtype, type SafetensorsDtype } from '../safetensors/dtypes';
import { SafetensorsError } from '../safetensors/errors';
import { PACKED_LAYOUT_VERSION, PACKED_MARKER_KEY, packedMetadataEntries, packedStorage } from '../safetensors/packed_metadata';
import { writeSafetensorsStream, type StreamedTensor, type StreamWriteOptions } from '../safetensors/stream_writer';
import { canPackRows, isPackedFormat, QUANT_BLOCK, type PackedFormat } from './formats';

/**
 * One tensor of a packed checkpoint: a weight packed in `dtype` (a {@link PackedFormat}: its bytes
 * are the GGUF block rows), or a plain safetensors tensor stored as it is (`'F32'`, `'BF16'`, …).
 * `shape` is the logical shape. The bytes come all at once, or from `fill`, which is asked for
 * whole rows at a time (of the last dimension: a packed row, or `shape.at(-1)` elements).
 */
export type PackedCheckpointTensor = {
  name: string;
  dtype: PackedFormat | SafetensorsDtype;
  shape: readonly number[];
} & ({ bytes: Uint8Array } | { fill(dst: Uint8Array, offset: number): void | Promise<void> });

/** Options of {@link writePackedSafetensors} and {@link writePackedCheckpoint}. */
export interface WritePackedOptions {
  /** More `__metadata__` strings (the packed entries are added to them). */
  metadata?: Record<string, string>;
  /** Bytes filled and written at a time (default 8 MiB). */
  chunkBytes?: number;
  /** Called after every piece written, with totals over everything this call writes. */
  onProgress?: (progress: { tensor: string; writtenBytes: number; totalBytes: number }) => void;
  signal?: AbortSignal;
}

/** Options of {@link writePackedCheckpoint}. */
export interface WritePackedCheckpointOptions extends WritePackedOptions {
  /**
   * Start a new shard before a shard's tensor data would exceed this many bytes (default 4 GB,
   * 4·10⁹: every shard then maps as one ArrayBuffer, which Node 20 caps at 4 GiB).
   */
  maxShardBytes?: number;
}

/** The default {@link WritePackedCheckpointOptions.maxShardBytes}. */
export const DEFAULT_MAX_SHARD_BYTES = 4e9;

interface Planned {
  tensor: PackedCheckpointTensor;
  streamed: StreamedTensor;
  byteLength: number;
}

function plan(file: string, t: PackedCheckpointTensor): Planned {
  if (!isPackedFormat(t.dtype) && !(typeof t.dtype === 'string' && isSafetensorsDtype(t.dtype))) {
    throw new SafetensorsError(
      file,
      `dtype ${JSON.stringify(t.dtype)} is neither a packed format (bf16, q8_0, q4_0) nor a safetensors dtype`,
      t.name,
    );
  }
  if (isPackedFormat(t.dtype)) {
    const format = t.dtype;
    if (t.shape.length === 0 || !t.shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new SafetensorsError(file, `a packed weight needs positive dimensions, got [${t.shape}]`, t.name);
    }
    const cols = t.shape[t.shape.length - 1];
    if (!canPackRows(format, cols)) {
      throw new SafetensorsError(
        file,
        `cannot be packed as ${format}: its rows of ${cols} weights are not whole blocks of ${QUANT_BLOCK}`,
        t.name,
      );
    }
  }
  const storage = isPackedFormat(t.dtype) ? packedStorage(t.dtype, t.shape) : { dtype: t.dtype, shape: [...t.shape] };
  const elements = storage.shape.reduce((a, b) => a * b, 1);
  const lastDim = storage.shape.length === 0 ? 1 : storage.shape[storage.shape.length - 1];
  const streamed: StreamedTensor =
    'bytes' in t
      ? { name: t.name, dtype: storage.dtype, shape: storage.shape, bytes: t.bytes }
      : {
          name: t.name,
          dtype: storage.dtype,
          shape: storage.shape,
          fill: t.fill,
          granularity: Math.max(1, lastDim * DTYPE_BYTES[storage.dtype]),
        };
  return { tensor: t, streamed, byteLength: elements * DTYPE_BYTES[storage.dtype] };
}

/** The largest power of two (up to 32) dividing `n`: how aligned the tensor after one of `n` bytes stays. */
function alignmentOf(n: number): number {
  let a = 1;
  while (a < 32 && n % (a * 2) === 0) a *= 2;
  return a;
}

/**
 * Orders tensors so that every one whose size is a multiple of 4 starts at a multiple of 4 (on a
 * 32-aligned data start): sizes divisible by 32 first, then by 16, 8, 4, 2, then odd sizes, each
 * group in the order given. Only tensors whose own size is not a multiple of 4 (which no int32 or
 * float32 view could hold in place anyway) can start unaligned.
 */
function alignedOrder(planned: Planned[]): Planned[] {
  return planned
    .map((p, i) => ({ p, i, a: alignmentOf(p.byteLength) }))
    .sort((x, y) => y.a - x.a || x.i - y.i)
    .map((x) => x.p);
}

function metadataFor(planned: Planned[], extra: Record<string, string> | undefined): Record<string, string> {
  const metadata: Record<string, string> = { ...extra, [PACKED_MARKER_KEY]: PACKED_LAYOUT_VERSION };
  for (const { tensor } of planned) {
    if (isPackedFormat(tensor.dtype)) {
      for (const [k, v] of packedMetadataEntries(tensor.name, { format: tensor.dtype, shape: [...tensor.shape] })) metadata[k] = v;
    }
  }
  return metadata;
}

async function writePlanned(
  file: string,
  planned: Planned[],
  options: WritePackedOptions,
  writtenBefore: number,
  totalBytes: number,
): Promise<number> {
  const ordered = alignedOrder(planned);
  const streamOptions: StreamWriteOptions = {
    metadata: metadataFor(ordered, options.metadata),
    alignment: 32,
    chunkBytes: options.chunkBytes,
    signal: options.signal,
    onProgress:
      options.onProgress && ((p) => options.onProgress!({ tensor: p.tensor, writtenBytes: writtenBefore + p.writtenBytes, totalBytes })),
  };
  return writeSafetensorsStream(
    file,
    ordered.map((p) => p.streamed),
    streamOptions,
  );
}

/**
 * Streams tensors into one packed safetensors file at `path` (see {@link PackedCheckpointTensor}):
 * the header first, from the shapes, then each tensor in pieces of at most `chunkBytes`; the data
 * section starts 32-byte aligned and tensors are ordered so that each whose size is a multiple of
 * 4 starts 4-byte aligned (so it maps in place). Temporary file, fsync and rename: on error or
 * abort nothing is left at `path`.
 */
export async function writePackedSafetensors(
  path: string,
  tensors: Iterable<PackedCheckpointTensor>,
  options: WritePackedOptions = {},
): Promise<void> {
  const planned = [...tensors].map((t) => plan(path, t));
  const total = planned.reduce((n, p) => n + p.byteLength, 0);
  await writePlanned(path, planned, options, 0, total);
}

/**
 * Writes a packed checkpoint into the existing folder `dir`: `model.safetensors`, or, when the
 * tensors exceed `maxShardBytes`, `model-00001-of-0000N.safetensors` shards (tensors in the order
 * given, a new shard whenever the next tensor would overflow the current one) and
 * `model.safetensors.index.json`, as Hugging Face lays them out. On error or abort the files this
 * call wrote are removed.
 *
 * @returns the names of the files written, index last
 */
export async function writePackedCheckpoint(
  dir: string,
  tensors: Iterable<PackedCheckpointTensor>,
  options: WritePackedCheckpointOptions = {},
): Promise<string[]> {
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0)) throw new RangeError(`maxShardBytes must be positive, got ${maxShardBytes}.`);
  const planned = [...tensors].map((t) => plan(path.join(dir, SINGLE_FILE), t));
  const shards: Planned[][] = [[]];
  let shardBytes = 0;
  for (const p of planned) {
    if (shardBytes > 0 && shardBytes + p.byteLength > maxShardBytes) {
      shards.push([]);
      shardBytes = 0;
    }
    shards[shards.length - 1].push(p);
    shardBytes += p.byteLength;
  }
  const total = planned.reduce((n, p) => n + p.byteLength, 0);
  const digits = Math.max(5, String(shards.length).length);
  const names =
    shards.length === 1
      ? [SINGLE_FILE]
      : shards.map((_, i) => `model-${String(i + 1).padStart(digits, '0')}-of-${String(shards.length).padStart(digits, '0')}.safetensors`);
  const written: string[] = [];
  try {
    let before = 0;
    for (const [i, shard] of shards.entries()) {
      await writePlanned(path.join(dir, names[i]), shard, options, before, total);
      written.push(names[i]);
      before += shard.reduce((n, p) => n + p.byteLength, 0);
    }
    if (shards.length > 1) {
      const weightMap: Record<string, string> = {};
      shards.forEach((shard, i) => shard.forEach((p) => (weightMap[p.tensor.name] = names[i])));
      const index = `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`;
      const tmp = path.join(dir, `.${INDEX_FILE}.tmp-${process.pid}`);
      const handle = await fsp.open(tmp, 'w');
      try {
        await handle.writeFile(index);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fsp.rename(tmp, path.join(dir, INDEX_FILE));
      written.push(INDEX_FILE);
    }
  } catch (err) {
    await Promise.all(written.map((f) => fsp.rm(path.join(dir, f), { force: true })));
    await fsp.rm(path.join(dir, `.${INDEX_FILE}.tmp-${process.pid}`), { force: true });
    throw err;
  }
  return written;
}
