import * as fs from 'node:fs';
import { quotedName } from '../safetensors/errors';
import {
  alignUp,
  GGML_TYPES,
  ggmlBlockWeights,
  ggmlByteLength,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_MAX_NAME_BYTES,
  GGUF_VALUE_TYPES,
  GGUF_VERSION,
  GgufError,
  isGgmlType,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
} from './gguf_format';

/** Where a tensor's bytes go: call `write` with consecutive pieces of any size. */
export interface GgufTensorSink {
  write(bytes: Uint8Array): void;
}

/** One tensor of a GGUF file: its info, and a callback streaming its data. */
export interface GgufTensor {
  /** Shorter than 64 UTF-8 bytes (ggml's GGML_MAX_NAME). */
  name: string;
  type: GgmlType;
  /**
   * Row-major shape, as PyTorch and safetensors write it: the last dimension is the row (ggml's
   * ne[0]). The file stores the dimensions reversed, in ggml's order. At most 4 dimensions.
   */
  shape: readonly number[];
  /**
   * Writes exactly the tensor's bytes in `type`'s layout (quantized types: ggml's block rows), in
   * order, in as many pieces as the producer likes; the file is written as the pieces arrive, so
   * a tensor never needs to be in memory whole.
   */
  write(dst: GgufTensorSink): void | Promise<void>;
}

/** Options of {@link writeGguf}. */
export interface WriteGgufOptions {
  /** Alignment of the data section and of every tensor, a power of two (default 32, ggml's). */
  alignment?: number;
  /** Bytes buffered before each write to disk (default 8 MiB): the memory the writer holds. */
  chunkBytes?: number;
}

/** Metadata in file order. */
export type GgufMetadata = ReadonlyArray<readonly [string, GgufValue]> | ReadonlyMap<string, GgufValue>;

const INTEGER_RANGES: Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', [number, number]> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};

/** Header bytes, grown as they are appended. */
class ByteBuilder {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }

  u64(v: bigint | number): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }

  scalar(type: GgufScalarType, v: number | bigint | boolean | string): void {
    switch (type) {
      case 'u8':
        this.reserve(1);
        this.buf.writeUInt8(v as number, this.length++);
        return;
      case 'i8':
        this.reserve(1);
        this.buf.writeInt8(v as number, this.length++);
        return;
      case 'bool':
        this.reserve(1);
        this.buf.writeUInt8(v ? 1 : 0, this.length++);
        return;
      case 'u16':
        this.reserve(2);
        this.buf.writeUInt16LE(v as number, this.length);
        this.length += 2;
        return;
      case 'i16':
        this.reserve(2);
        this.buf.writeInt16LE(v as number, this.length);
        this.length += 2;
        return;
      case 'u32':
        this.u32(v as number);
        return;
      case 'i32':
        this.reserve(4);
        this.buf.writeInt32LE(v as number, this.length);
        this.length += 4;
        return;
      case 'f32':
        this.reserve(4);
        this.buf.writeFloatLE(v as number, this.length);
        this.length += 4;
        return;
      case 'u64':
        this.u64(v as bigint | number);
        return;
      case 'i64':
        this.reserve(8);
        this.buf.writeBigInt64LE(BigInt(v as bigint | number), this.length);
        this.length += 8;
        return;
      case 'f64':
        this.reserve(8);
        this.buf.writeDoubleLE(v as number, this.length);
        this.length += 8;
        return;
      case 'string': {
        const s = v as string;
        const n = Buffer.byteLength(s, 'utf8');
        this.u64(n);
        this.reserve(n);
        this.buf.write(s, this.length, 'utf8');
        this.length += n;
        return;
      }
    }
  }

  zeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** Why `v` cannot be stored as `type`, or null. */
function scalarProblem(type: GgufScalarType, v: unknown): string | null {
  switch (type) {
    case 'bool':
      return typeof v === 'boolean' ? null : `expected a boolean, got ${typeof v}`;
    case 'string':
      return typeof v === 'string' ? null : `expected a string, got ${typeof v}`;
    case 'f32':
    case 'f64':
      return typeof v === 'number' ? null : `expected a number, got ${typeof v}`;
    case 'u64':
    case 'i64': {
      if (typeof v === 'number' && !Number.isSafeInteger(v)) return `${v} is not a safe integer (pass a bigint)`;
      if (typeof v !== 'number' && typeof v !== 'bigint') return `expected an integer, got ${typeof v}`;
      const b = BigInt(v);
      const [lo, hi] = type === 'u64' ? [0n, (1n << 64n) - 1n] : [-(1n << 63n), (1n << 63n) - 1n];
      return b < lo || b > hi ? `${b} is outside the ${type} range` : null;
    }
    default: {
      const [lo, hi] = INTEGER_RANGES[type];
      if (typeof v !== 'number' || !Number.isInteger(v)) return `expected an integer, got ${String(v)}`;
      return v < lo || v > hi ? `${v} is outside the ${type} range [${lo}, ${hi}]` : null;
    }
  }
}

function isScalarType(t: unknown): t is GgufScalarType {
  return typeof t === 'string' && t !== 'array' && Object.hasOwn(GGUF_VALUE_TYPES, t);
}

function encodeMetadata(file: string, entries: [string, GgufValue][], out: ByteBuilder): void {
  const seen = new Set<string>();
  for (const [key, value] of entries) {
    if (typeof key !== 'string' || key.length === 0) throw new GgufError(file, 'metadata keys must be non-empty strings');
    if (seen.has(key)) throw new GgufError(file, 'appears twice in the metadata', { key });
    seen.add(key);
    const fail = (detail: string) => new GgufError(file, detail, { key });
    if (value === null || typeof value !== 'object') throw fail(`expected a GgufValue ({ type, value }), got ${String(value)}`);
    out.scalar('string', key);
    if (value.type === 'array') {
      if (!isScalarType(value.itemType)) throw fail(`unknown array item type ${quotedName(String(value.itemType))}`);
      if (!Array.isArray(value.value)) throw fail('an array value needs a list');
      value.value.forEach((item, i) => {
        const problem = scalarProblem(value.itemType, item);
        if (problem !== null) throw fail(`item ${i}: ${problem}`);
      });
      out.u32(GGUF_VALUE_TYPES.array);
      out.u32(GGUF_VALUE_TYPES[value.itemType]);
      out.u64(value.value.length);
      for (const item of value.value) out.scalar(value.itemType, item);
      continue;
    }
    if (!isScalarType(value.type)) throw fail(`unknown value type ${quotedName(String((value as { type: unknown }).type))}`);
    const problem = scalarProblem(value.type, value.value);
    if (problem !== null) throw fail(problem);
    out.u32(GGUF_VALUE_TYPES[value.type]);
    out.scalar(value.type, value.value);
  }
}

interface PlannedTensor {
  tensor: GgufTensor;
  byteLength: number;
  offset: number;
}

function planTensors(file: string, tensors: readonly GgufTensor[], alignment: number): PlannedTensor[] {
  const names = new Set<string>();
  let offset = 0;
  return tensors.map((tensor) => {
    const { name, type, shape } = tensor;
    const fail = (detail: string) => new GgufError(file, detail, { tensor: String(name) });
    if (typeof name !== 'string' || name.length === 0) throw new GgufError(file, 'tensor names must be non-empty strings');
    if (Buffer.byteLength(name, 'utf8') >= GGUF_MAX_NAME_BYTES) {
      throw fail(`the name is ${Buffer.byteLength(name, 'utf8')} bytes; ggml allows at most ${GGUF_MAX_NAME_BYTES - 1}`);
    }
    if (names.has(name)) throw fail('appears twice in the tensor list');
    names.add(name);
    if (!isGgmlType(type))
      throw fail(`unknown tensor type ${quotedName(String(type))}; expected one of ${Object.keys(GGML_TYPES).join(', ')}`);
    if (!Array.isArray(shape) || shape.length === 0 || shape.length > GGUF_MAX_DIMS) {
      throw fail(`the shape must have 1 to ${GGUF_MAX_DIMS} dimensions, got [${String(shape)}]`);
    }
    if (!shape.every((d) => Number.isSafeInteger(d) && d > 0)) throw fail(`the shape [${shape}] must hold positive integers`);
    const row = shape[shape.length - 1];
    if (row % ggmlBlockWeights(type) !== 0) {
      throw fail(
        `a ${type} row holds whole blocks of ${ggmlBlockWeights(type)} weights, but the row length (last dimension of [${shape}]) is ${row}`,
      );
    }
    if (typeof tensor.write !== 'function') throw fail('has no write(dst) function');
    const byteLength = ggmlByteLength(type, shape);
    const planned = { tensor, byteLength, offset };
    offset = alignUp(offset + byteLength, alignment);
    return planned;
  });
}

/** The header up to the start of the data section (padded to the alignment). */
function encodeHeader(file: string, entries: [string, GgufValue][], planned: PlannedTensor[], alignment: number): Buffer {
  const out = new ByteBuilder();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(planned.length);
  out.u64(entries.length);
  encodeMetadata(file, entries, out);
  for (const { tensor, offset } of planned) {
    out.scalar('string', tensor.name);
    out.u32(tensor.shape.length);
    for (let d = tensor.shape.length - 1; d >= 0; d--) out.u64(tensor.shape[d]);
    out.u32(GGML_TYPES[tensor.type]);
    out.u64(offset);
  }
  out.zeros(alignUp(out.length, alignment) - out.length);
  return out.bytes();
}

/** Writes through a fixed buffer, so memory stays at `chunkBytes` whatever the producers hand over. */
class ChunkedFileWriter {
  private readonly buf: Buffer;
  private used = 0;
  written = 0;

  constructor(
    private readonly fd: number,
    chunkBytes: number,
  ) {
    this.buf = Buffer.alloc(chunkBytes);
  }

  write(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.buf.length - this.used);
      this.buf.set(bytes.subarray(at, at + n), this.used);
      this.used += n;
      at += n;
      if (this.used === this.buf.length) this.flush();
    }
    this.written += bytes.length;
  }

  zeros(n: number): void {
    this.write(new Uint8Array(n));
  }

  flush(): void {
    let done = 0;
    while (done < this.used) done += fs.writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }
}

/**
 * Writes a GGUF (version 3) file: `metadata` in order (plus `general.alignment` when it is absent),
 * the tensor infos, then each tensor's data as its `write` callback streams it, every tensor on the
 * alignment. The file is written under a temporary name next to `path` and renamed into place, so
 * a failure never leaves a half-written file at `path`.
 *
 * @example
 * ```ts
 * await writeGguf('tiny.gguf', [['general.architecture', ggufValue.string('llama')]], [
 *   { name: 'token_embd.weight', type: 'F32', shape: [vocab, hidden], write: (dst) => dst.write(bytes) },
 * ]);
 * ```
 */
export async function writeGguf(
  path: string,
  metadata: GgufMetadata,
  tensors: readonly GgufTensor[],
  options: WriteGgufOptions = {},
): Promise<void> {
  const entries: [string, GgufValue][] = (
    metadata instanceof Map ? [...metadata] : [...(metadata as ReadonlyArray<readonly [string, GgufValue]>)]
  ).map(([k, v]) => [k, v]);
  const given = entries.find(([k]) => k === GGUF_ALIGNMENT_KEY)?.[1];
  let alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (given !== undefined) {
    if (given.type !== 'u32') throw new GgufError(path, `must be a u32, got ${given.type}`, { key: GGUF_ALIGNMENT_KEY });
    if (options.alignment !== undefined && options.alignment !== given.value) {
      throw new GgufError(path, `is ${given.value} but options.alignment is ${options.alignment}`, { key: GGUF_ALIGNMENT_KEY });
    }
    alignment = given.value;
  } else {
    entries.push([GGUF_ALIGNMENT_KEY, { type: 'u32', value: alignment }]);
  }
  if (!Number.isSafeInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0 || alignment > 0x80000000) {
    throw new GgufError(path, `the alignment must be a power of two, got ${alignment}`);
  }
  const chunkBytes = options.chunkBytes ?? 8 << 20;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0)
    throw new GgufError(path, `chunkBytes must be a positive integer, got ${chunkBytes}`);

  const planned = planTensors(path, tensors, alignment);
  const header = encodeHeader(path, entries, planned, alignment);

  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let fd: number | null = null;
  let current: string | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    const out = new ChunkedFileWriter(fd, chunkBytes);
    out.write(header);
    for (const { tensor, byteLength, offset } of planned) {
      current = tensor.name;
      const start = out.written;
      const sink: GgufTensorSink = {
        write: (bytes) => {
          if (!(bytes instanceof Uint8Array)) throw new TypeError(`write() takes a Uint8Array, got ${typeof bytes}`);
          if (out.written - start + bytes.length > byteLength) {
            throw new RangeError(`it was given more than its ${byteLength} bytes (${tensor.type} [${tensor.shape}])`);
          }
          out.write(bytes);
        },
      };
      await tensor.write(sink);
      const got = out.written - start;
      if (got !== byteLength) throw new RangeError(`it wrote ${got} bytes; ${tensor.type} [${tensor.shape}] is ${byteLength} bytes`);
      out.zeros(header.length + alignUp(offset + byteLength, alignment) - out.written);
    }
    current = undefined;
    out.flush();
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, path);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (err instanceof GgufError) throw err;
    const detail = (err as Error).message;
    throw new GgufError(
      path,
      current !== undefined ? `writing its data failed: ${detail}` : `cannot write: ${detail}`,
      current !== undefined ? { tensor: current } : undefined,
    );
  }
}
