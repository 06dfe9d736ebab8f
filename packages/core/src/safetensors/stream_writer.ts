import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { DTYPE_BYTES, type SafetensorsDtype } from './dtypes';
import { quotedName, SafetensorsError } from './errors';

/**
 * A tensor to stream into a safetensors file: its header entry, and either all its bytes at once or
 * a producer that fills them piece by piece (so a tensor need never be whole in memory).
 */
export type StreamedTensor = {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
} & (
  | { bytes: Uint8Array }
  | {
      /**
       * Fills `dst` with the tensor's bytes [offset, offset + dst.length). Called in order of
       * `offset`, with pieces of at most the writer's `chunkBytes` (rounded down to whole
       * `granularity`, but at least one); `dst` is reused afterwards, so do not keep it.
       */
      fill(dst: Uint8Array, offset: number): void | Promise<void>;
      /** Every piece but the last is a multiple of this many bytes (default 1), e.g. one row. */
      granularity?: number;
    }
);

/** Options of {@link writeSafetensorsStream}. */
export interface StreamWriteOptions {
  /** Stored as `__metadata__` (strings only). */
  metadata?: Record<string, string>;
  /**
   * The data section starts at a multiple of this many bytes (the header is padded with spaces,
   * as the format allows). Default 32. Tensors follow each other without gaps, as the format
   * requires, so a tensor is aligned only as far as the sizes of those before it allow.
   */
  alignment?: number;
  /** Bytes filled and written at a time (default 8 MiB): the most tensor data held in memory. */
  chunkBytes?: number;
  /** Called after every piece written. */
  onProgress?: (progress: { tensor: string; writtenBytes: number; totalBytes: number }) => void;
  /** Stops between pieces; the partial file is removed and the promise rejects with the reason. */
  signal?: AbortSignal;
}

const DEFAULT_CHUNK_BYTES = 8 << 20;

/** Storage bytes of a tensor of `shape` in `dtype`, or a message saying what is wrong. */
function tensorBytes(t: StreamedTensor): number | string {
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return `shape [${String(t.shape)}] is not a list of non-negative integers`;
  }
  if (!Object.hasOwn(DTYPE_BYTES, t.dtype)) return `dtype ${quotedName(String(t.dtype))} is not a safetensors dtype`;
  const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
  if (!Number.isSafeInteger(n)) return `shape [${t.shape}] is too large`;
  if ('bytes' in t && t.bytes.length !== n) return `shape [${t.shape}] of ${t.dtype} needs ${n} bytes, got ${t.bytes.length}`;
  return n;
}

/** Writes all of `data` at `position`. */
async function writeAll(handle: fsp.FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Streams tensors into a safetensors file at `path`, in the order given. The header is computed
 * from the shapes first; then each tensor's bytes are written in pieces of at most `chunkBytes`,
 * so memory stays at one piece however large the file. The file is written under a temporary
 * name next to `path`, flushed to disk (fsync) and renamed into place: on any error, or when
 * `signal` aborts, nothing is left at `path` and the temporary file is removed.
 *
 * @returns the size of the file written
 */
export async function writeSafetensorsStream(
  path: string,
  tensors: readonly StreamedTensor[],
  options: StreamWriteOptions = {},
): Promise<number> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const alignment = options.alignment ?? 32;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1)
    throw new RangeError(`chunkBytes must be a positive integer, got ${chunkBytes}.`);
  if (!Number.isSafeInteger(alignment) || alignment < 1) throw new RangeError(`alignment must be a positive integer, got ${alignment}.`);
  const header: Record<string, unknown> = {};
  if (options.metadata) header.__metadata__ = options.metadata;
  const sizes: number[] = [];
  let dataBytes = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) {
      throw new SafetensorsError(path, t.name === '__metadata__' ? 'is a reserved name' : 'is given twice', t.name);
    }
    const n = tensorBytes(t);
    if (typeof n === 'string') throw new SafetensorsError(path, n, t.name);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [dataBytes, dataBytes + n] };
    sizes.push(n);
    dataBytes += n;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (alignment - ((8 + json.length) % alignment)) % alignment;
  const headerBytes = Buffer.alloc(8 + json.length + pad, 0x20);
  headerBytes.writeBigUInt64LE(BigInt(json.length + pad), 0);
  json.copy(headerBytes, 8);

  const tmp = nodePath.join(nodePath.dirname(path), `.${nodePath.basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx');
    await writeAll(handle, headerBytes, 0);
    let position = headerBytes.length;
    let written = 0;
    let piece = new Uint8Array(0);
    for (const [i, t] of tensors.entries()) {
      const size = sizes[i];
      const granularity = 'bytes' in t ? 1 : Math.max(1, t.granularity ?? 1);
      const step = Math.max(granularity, chunkBytes - (chunkBytes % granularity));
      for (let offset = 0; offset < size; offset += step) {
        options.signal?.throwIfAborted();
        const n = Math.min(step, size - offset);
        let data: Uint8Array;
        if ('bytes' in t) {
          data = t.bytes.subarray(offset, offset + n);
        } else {
          if (piece.length < n) piece = new Uint8Array(Math.min(step, size));
          data = piece.subarray(0, n);
          await t.fill(data, offset);
        }
        await writeAll(handle, data, position);
        position += n;
        written += n;
        options.onProgress?.({ tensor: t.name, writtenBytes: written, totalBytes: dataBytes });
      }
    }
    options.signal?.throwIfAborted();
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    // A producer's own errors (a corrupt source tensor, an abort) pass through as they are.
    if (typeof (err as NodeJS.ErrnoException).code === 'string' && (err as NodeJS.ErrnoException).syscall !== undefined) {
      throw new SafetensorsError(path, `cannot write: ${(err as Error).message}`);
    }
    throw err;
  }
  await syncFolder(nodePath.dirname(path));
  return headerBytes.length + dataBytes;
}

/** Flushes a folder's entries (the rename) to disk; not every platform can, which is not an error. */
async function syncFolder(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Windows cannot open folders; some file systems refuse fsync on them.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
