import * as fs from 'node:fs';
import { FileKindError, openRegularFile } from '../io/regular_file';
import {
  alignUp,
  ggmlBlockWeights,
  ggmlByteLength,
  ggmlTypeName,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  GGUF_VALUE_TYPES,
  GgufError,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
} from './gguf_format';

/** Where one tensor sits in a GGUF file. */
export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** Row-major shape (the last dimension is the row): `ne` reversed. */
  shape: number[];
  /** ggml's dimension order as stored: ne[0] is the row length. */
  ne: number[];
  /** Byte offset of the data relative to the data section, as stored. */
  relativeOffset: number;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
}

/** The header of a GGUF file. */
export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
}

const SCALAR_TYPES = new Map<number, GgufScalarType>(
  (Object.entries(GGUF_VALUE_TYPES) as [keyof typeof GGUF_VALUE_TYPES, number][])
    .filter(([k]) => k !== 'array')
    .map(([k, v]) => [v, k as GgufScalarType]),
);

/** Reads the file forward through a window, fetching more from disk as the parse needs it. */
class Cursor {
  private buf = Buffer.alloc(1 << 20);
  private start = 0; // file offset of buf[0]
  private end = 0; // file offset just past the valid bytes of buf
  pos = 0;

  constructor(
    private readonly fd: number,
    private readonly file: string,
    private readonly fileSize: number,
  ) {}

  private need(n: number): number {
    if (this.pos + n > this.fileSize) {
      throw new GgufError(this.file, `the header runs past the end of the file (${this.fileSize} bytes) at byte ${this.pos}`);
    }
    if (this.pos >= this.start && this.pos + n <= this.end) return this.pos - this.start;
    if (n > this.buf.length) this.buf = Buffer.alloc(Math.max(n, this.buf.length * 2));
    this.start = this.pos;
    this.end = this.pos;
    while (this.end - this.start < Math.min(this.buf.length, this.fileSize - this.start)) {
      const got = fs.readSync(this.fd, this.buf, this.end - this.start, this.buf.length - (this.end - this.start), this.end);
      if (got === 0) break;
      this.end += got;
    }
    if (this.pos + n > this.end) throw new GgufError(this.file, `the file ended while reading the header at byte ${this.pos}`);
    return 0;
  }

  /** Index in the window of the next `n` bytes, which the cursor then moves past. */
  private advance(n: number): number {
    const at = this.need(n);
    this.pos += n;
    return at;
  }

  u32(): number {
    return this.buf.readUInt32LE(this.advance(4));
  }

  u64(): bigint {
    return this.buf.readBigUInt64LE(this.advance(8));
  }

  /** A u64 that must fit a JS number (counts, sizes, offsets). */
  size(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(this.file, `${what} ${v} is too large`);
    return Number(v);
  }

  scalar(type: GgufScalarType): number | bigint | boolean | string {
    switch (type) {
      case 'u8':
        return this.buf.readUInt8(this.advance(1));
      case 'i8':
        return this.buf.readInt8(this.advance(1));
      case 'bool':
        return this.buf.readUInt8(this.advance(1)) !== 0;
      case 'u16':
        return this.buf.readUInt16LE(this.advance(2));
      case 'i16':
        return this.buf.readInt16LE(this.advance(2));
      case 'u32':
        return this.buf.readUInt32LE(this.advance(4));
      case 'i32':
        return this.buf.readInt32LE(this.advance(4));
      case 'f32':
        return this.buf.readFloatLE(this.advance(4));
      case 'u64':
        return this.buf.readBigUInt64LE(this.advance(8));
      case 'i64':
        return this.buf.readBigInt64LE(this.advance(8));
      case 'f64':
        return this.buf.readDoubleLE(this.advance(8));
      case 'string': {
        const n = this.size('a string length');
        const at = this.advance(n);
        return this.buf.toString('utf8', at, at + n);
      }
    }
  }
}

function valueType(file: string, id: number, key: string): GgufScalarType | 'array' {
  if (id === GGUF_VALUE_TYPES.array) return 'array';
  const t = SCALAR_TYPES.get(id);
  if (t === undefined) throw new GgufError(file, `has unknown value type ${id}`, { key });
  return t;
}

function readHeaderFrom(file: string, fd: number): GgufHeader {
  const fileSize = fs.fstatSync(fd).size;
  const c = new Cursor(fd, file, fileSize);
  if (fileSize < 24 || c.u32() !== GGUF_MAGIC) throw new GgufError(file, 'is not a GGUF file (it does not start with "GGUF")');
  const version = c.u32();
  if (version !== 2 && version !== 3) throw new GgufError(file, `has GGUF version ${version}; versions 2 and 3 are read`);
  const tensorCount = c.size('the tensor count');
  const kvCount = c.size('the metadata count');
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.scalar('string') as string;
    if (metadata.has(key)) throw new GgufError(file, 'appears twice in the metadata', { key });
    const type = valueType(file, c.u32(), key);
    if (type === 'array') {
      const itemType = valueType(file, c.u32(), key);
      if (itemType === 'array') throw new GgufError(file, 'is an array of arrays, which this reader does not read', { key });
      const n = c.size('an array length');
      const value: (number | bigint | boolean | string)[] = [];
      for (let j = 0; j < n; j++) value.push(c.scalar(itemType));
      metadata.set(key, { type: 'array', itemType, value });
    } else {
      metadata.set(key, { type, value: c.scalar(type) } as GgufValue);
    }
  }
  const alignValue = metadata.get(GGUF_ALIGNMENT_KEY);
  const alignment = alignValue === undefined ? GGUF_DEFAULT_ALIGNMENT : Number(alignValue.value);
  if (alignValue !== undefined && (alignValue.type !== 'u32' || alignment <= 0 || (alignment & (alignment - 1)) !== 0)) {
    throw new GgufError(file, `must be a u32 power of two, got ${alignValue.type} ${String(alignValue.value)}`, {
      key: GGUF_ALIGNMENT_KEY,
    });
  }
  const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.scalar('string') as string;
    const dims = c.u32();
    if (dims === 0 || dims > GGUF_MAX_DIMS)
      throw new GgufError(file, `has ${dims} dimensions; 1 to ${GGUF_MAX_DIMS} expected`, { tensor: name });
    const ne: number[] = [];
    for (let d = 0; d < dims; d++) ne.push(c.size('a dimension'));
    const typeId = c.u32();
    const type = ggmlTypeName(typeId);
    if (type === undefined) throw new GgufError(file, `has ggml type ${typeId}, which graniteflow does not read`, { tensor: name });
    const relativeOffset = c.size('a tensor offset');
    const shape = [...ne].reverse();
    if (shape[shape.length - 1] % ggmlBlockWeights(type) !== 0) {
      throw new GgufError(file, `a ${type} row of ${shape[shape.length - 1]} weights is not whole blocks`, { tensor: name });
    }
    infos.push({ name, type, shape, ne, relativeOffset, byteLength: ggmlByteLength(type, shape) });
  }
  const dataOffset = alignUp(c.pos, alignment);
  const tensors = infos.map((t) => {
    const offset = dataOffset + t.relativeOffset;
    if (t.relativeOffset % alignment !== 0) {
      throw new GgufError(file, `its data offset ${t.relativeOffset} is not a multiple of the alignment ${alignment}`, { tensor: t.name });
    }
    if (offset + t.byteLength > fileSize) {
      throw new GgufError(file, `its ${t.byteLength} bytes at offset ${offset} run past the end of the file (${fileSize} bytes)`, {
        tensor: t.name,
      });
    }
    return { ...t, offset };
  });
  return { version, metadata, tensors, alignment, dataOffset };
}

function openGguf(file: string): number {
  try {
    return openRegularFile(file);
  } catch (err) {
    if (err instanceof FileKindError) throw new GgufError(file, err.detail);
    throw err;
  }
}

/** Parses the header of a GGUF file (metadata and tensor infos) without reading tensor data. */
export function readGgufHeader(file: string): GgufHeader {
  const fd = openGguf(file);
  try {
    return readHeaderFrom(file, fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The raw bytes of one tensor of a GGUF file (the whole tensor: for tests and small tensors). */
export function readGgufTensorBytes(file: string, tensor: GgufTensorInfo): Uint8Array {
  const fd = openGguf(file);
  try {
    const out = new Uint8Array(tensor.byteLength);
    let done = 0;
    while (done < out.length) {
      const got = fs.readSync(fd, out, done, out.length - done, tensor.offset + done);
      if (got === 0) throw new GgufError(file, 'the file ended while reading tensor data', { tensor: tensor.name });
      done += got;
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
