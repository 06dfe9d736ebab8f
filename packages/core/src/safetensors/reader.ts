import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { jsonErrorDetail, previewJson } from '../io/json_preview';
import { FileKindError, openRegularFile } from '../io/regular_file';
import { quotedName, SafetensorsError } from './errors';
import { duplicateTopLevelKey } from './header_keys';
import { PackedMetadataProblem, readPackedLayouts, type PackedLayout } from './packed_metadata';
import { DTYPE_BYTES, decodeTensorBytes, isSafetensorsDtype, type DecodedTensor, type SafetensorsDtype } from './dtypes';

/** Where one tensor sits in a safetensors file. */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  /** The stored shape (for a q8_0 / q4_0 packed weight: [rows, rowBytes] of U8). */
  shape: number[];
  /** The file holding the tensor. */
  file: string;
  /** Absolute byte offset of the data in the file (what a memory map of the file starts from). */
  offset: number;
  byteLength: number;
  /**
   * Present when the tensor is a graniteflow packed weight (see `__metadata__` in the core README,
   * "Packed checkpoints"): its packed format and logical shape.
   */
  packed?: PackedLayout;
}

/** Headers larger than this are refused before reading them (the format's own reader uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * A safetensors file opened for reading tensor by tensor. Only the header is read on open; each
 * tensor's bytes are read from disk when asked for, so a file larger than memory can be loaded one
 * tensor at a time. The header is validated completely on open: every failure is a
 * {@link SafetensorsError} naming the file and the tensor.
 */
export class SafetensorsFile {
  private fd: number | null;
  private readonly tensors: Map<string, SafetensorsTensorInfo>;

  private constructor(
    readonly path: string,
    fd: number,
    tensors: Map<string, SafetensorsTensorInfo>,
    /** The free-form `__metadata__` strings. */
    readonly metadata: Record<string, string>,
  ) {
    this.fd = fd;
    this.tensors = tensors;
  }

  /** Opens and validates a file. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openRegularFile(path);
    } catch (err) {
      if (err instanceof FileKindError) throw new SafetensorsError(path, err.detail);
      throw err;
    }
    try {
      const { tensors, metadata } = SafetensorsFile.readHeader(path, fd);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Reads exactly `length` bytes at `position`, or fails naming what was being read. */
  private static readExactly(path: string, fd: number, length: number, position: number, what: string, tensor?: string): Buffer {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const got = fs.readSync(fd, buf, done, length - done, position + done);
      if (got === 0) throw new SafetensorsError(path, `file ended while reading ${what}`, tensor);
      done += got;
    }
    return buf;
  }

  private static readHeader(path: string, fd: number) {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) {
      throw new SafetensorsError(path, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
    }
    const headerLen = SafetensorsFile.readExactly(path, fd, 8, 0, 'the header length').readBigUInt64LE(0);
    if (headerLen > BigInt(fileSize - 8)) {
      throw new SafetensorsError(
        path,
        `header length ${headerLen} exceeds the ${fileSize - 8} bytes after the length field (truncated or not a safetensors file)`,
      );
    }
    if (headerLen > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(path, `header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
    }
    const n = Number(headerLen);
    const text = SafetensorsFile.readExactly(path, fd, n, 8, 'the header').toString('utf8');
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (err) {
      throw new SafetensorsError(path, `header is not valid JSON: ${jsonErrorDetail(err)}`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      throw new SafetensorsError(path, 'header is not a JSON object');
    }
    // JSON.parse keeps the last of repeated keys: two tensors under one name would load one silently.
    const duplicate = duplicateTopLevelKey(text);
    if (duplicate !== null) {
      throw new SafetensorsError(path, 'appears more than once in the header', duplicate);
    }
    const dataStart = 8 + n;
    const dataSize = fileSize - dataStart;
    const tensors = new Map<string, SafetensorsTensorInfo>();
    const spans: [number, number, string][] = [];
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = SafetensorsFile.checkMetadata(path, raw);
        continue;
      }
      const info = SafetensorsFile.checkEntry(path, name, raw, dataSize);
      spans.push([info.begin, info.end, name]);
      tensors.set(name, {
        name,
        dtype: info.dtype,
        shape: info.shape,
        file: path,
        offset: dataStart + info.begin,
        byteLength: info.end - info.begin,
      });
    }
    SafetensorsFile.checkCoverage(path, spans, dataSize);
    try {
      for (const [name, layout] of readPackedLayouts(metadata, tensors)) tensors.get(name)!.packed = layout;
    } catch (err) {
      if (err instanceof PackedMetadataProblem) throw new SafetensorsError(path, err.detail, err.tensor);
      throw err;
    }
    return { tensors, metadata };
  }

  /**
   * The tensors must tile the data section exactly, as the format requires: sorted by offset,
   * each starts where the previous one ends, from 0 to the end of the file. Bytes that belong to
   * no tensor mean a wrong header length or a damaged header, never a file to trust.
   */
  private static checkCoverage(path: string, spans: [number, number, string][], dataSize: number): void {
    spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let covered = 0;
    let previous: string | undefined;
    for (const [begin, end, name] of spans) {
      if (begin < covered) {
        throw new SafetensorsError(
          path,
          `data_offsets overlap those of ${quotedName(previous!)} (starts at ${begin}, before ${covered})`,
          name,
        );
      }
      if (begin > covered) {
        throw new SafetensorsError(
          path,
          `data_offsets start at ${begin}, leaving bytes [${covered}, ${begin}) of the data section to no tensor` +
            (previous === undefined ? '' : ` (after ${quotedName(previous)})`),
          name,
        );
      }
      covered = end;
      previous = name;
    }
    if (covered !== dataSize) {
      throw new SafetensorsError(
        path,
        `the data section holds ${dataSize} bytes but the tensors cover ${covered}` +
          (previous === undefined ? '' : ` (the last, ${quotedName(previous)}, ends there)`) +
          `: ${dataSize - covered} trailing bytes belong to no tensor (wrong header length, or a damaged file)`,
      );
    }
  }

  private static checkMetadata(path: string, raw: unknown): Record<string, string> {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new SafetensorsError(path, '__metadata__ must be an object of strings');
    }
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(path, `__metadata__.${quotedName(k).slice(1, -1)} must be a string, got ${typeof v}`);
      }
    }
    return raw as Record<string, string>;
  }

  private static checkEntry(path: string, name: string, raw: unknown, dataSize: number) {
    if (raw === null || typeof raw !== 'object') {
      throw new SafetensorsError(path, 'header entry is not an object', name);
    }
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !isSafetensorsDtype(dtype)) {
      throw new SafetensorsError(
        path,
        `unsupported dtype ${previewJson(dtype)}; expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`,
        name,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new SafetensorsError(path, `shape ${previewJson(shape)} is not a list of non-negative integers`, name);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !isNonNegativeInteger(offsets[0]) ||
      !isNonNegativeInteger(offsets[1]) ||
      offsets[1] < offsets[0]
    ) {
      throw new SafetensorsError(path, `data_offsets ${previewJson(offsets)} is not [begin, end] with begin <= end`, name);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(path, `data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes)`, name);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = elements * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        path,
        `shape [${shape}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
        name,
      );
    }
    return { dtype, shape: shape as number[], begin, end };
  }

  /** Tensor names in file order of their data. */
  names(): string[] {
    return [...this.tensors.values()].sort((a, b) => a.offset - b.offset).map((t) => t.name);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Dtype, shape and location of a tensor. */
  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new SafetensorsError(this.path, 'no such tensor in this file', name);
    return info;
  }

  /** The raw little-endian bytes of one tensor, read from disk now. */
  readBytes(name: string): Uint8Array {
    const buf = new Uint8Array(this.info(name).byteLength);
    this.readBytesInto(name, buf);
    return buf;
  }

  /**
   * Reads `dst.length` bytes of one tensor's data, starting `byteOffset` bytes into it, into `dst`
   * (for streaming a large tensor in pieces, or reading straight into backend memory).
   */
  readBytesInto(name: string, dst: Uint8Array, byteOffset = 0): void {
    const info = this.info(name);
    if (this.fd === null) throw new SafetensorsError(this.path, 'file is closed', name);
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset + dst.length > info.byteLength) {
      throw new SafetensorsError(
        this.path,
        `cannot read bytes [${byteOffset}, ${byteOffset + dst.length}) of a tensor of ${info.byteLength} bytes`,
        name,
      );
    }
    let done = 0;
    while (done < dst.length) {
      const got = fs.readSync(this.fd, dst, done, dst.length - done, info.offset + byteOffset + done);
      if (got === 0) throw new SafetensorsError(this.path, 'file ended while reading tensor data', name);
      done += got;
    }
  }

  /** One tensor decoded to float32 / int32 / bool arrays (BF16 and F16 widen to float32). */
  read(name: string): DecodedTensor {
    const info = this.info(name);
    const decoded = decodeTensorBytes(info.dtype, info.shape, this.readBytes(name));
    if (typeof decoded === 'string') throw new SafetensorsError(this.path, decoded, name);
    return decoded;
  }

  /** One tensor as a tfjs tensor (the caller owns it). */
  readTensor(name: string): tf.Tensor {
    const d = this.read(name);
    return tf.tensor(d.data, d.shape, d.dtype);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
