import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { DTYPE_BYTES, LITTLE_ENDIAN, floatToBf16, floatToHalf, type SafetensorsDtype } from './dtypes';
import { SafetensorsError } from './errors';

/** A tensor to write: a tfjs tensor, or raw values with a shape and optionally a storage dtype. */
export type WritableTensor =
  | tf.Tensor
  | {
      shape: number[];
      data: Float32Array | Int32Array | Uint8Array | number[];
      /** Storage dtype (default F32 for floats, I32 for Int32Array, BOOL for Uint8Array). */
      dtype?: SafetensorsDtype;
    };

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Stored as `__metadata__` (strings only). */
  metadata?: Record<string, string>;
  /** Storage dtype for float tensors given as tfjs tensors (default F32). */
  floatDtype?: 'F32' | 'BF16' | 'F16';
}

/** The bytes of typed arrays already in file order (little-endian host), or null. */
function encodeDirect(dtype: SafetensorsDtype, values: ArrayLike<number>): Uint8Array | null {
  if (!LITTLE_ENDIAN) return null;
  const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
  if (dtype === 'F32' && values instanceof Float32Array) return bytesOf(values);
  if (dtype === 'I32' && values instanceof Int32Array) return bytesOf(values);
  if (dtype === 'BF16' && values instanceof Float32Array) return bytesOf(floatToBf16(values));
  return null;
}

function encode(dtype: SafetensorsDtype, values: ArrayLike<number>): Uint8Array {
  const direct = encodeDirect(dtype, values);
  if (direct !== null) return direct;
  const n = values.length;
  const out = new Uint8Array(n * DTYPE_BYTES[dtype]);
  const view = new DataView(out.buffer);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) view.setFloat32(4 * i, values[i], true);
      break;
    case 'BF16': {
      const bits = floatToBf16(Float32Array.from(values));
      for (let i = 0; i < n; i++) view.setUint16(2 * i, bits[i], true);
      break;
    }
    case 'F16':
      for (let i = 0; i < n; i++) view.setUint16(2 * i, floatToHalf(values[i]), true);
      break;
    case 'I32':
      for (let i = 0; i < n; i++) view.setInt32(4 * i, values[i], true);
      break;
    case 'I64':
      for (let i = 0; i < n; i++) view.setBigInt64(8 * i, BigInt(Math.trunc(values[i])), true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) view.setInt8(i, values[i]);
      break;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) view.setUint8(i, values[i]);
      break;
  }
  return out;
}

function normalise(
  name: string,
  t: WritableTensor,
  floatDtype: SafetensorsDtype,
): { dtype: SafetensorsDtype; shape: number[]; values: ArrayLike<number> } {
  if (t instanceof tf.Tensor) {
    const dtype: SafetensorsDtype = t.dtype === 'float32' ? floatDtype : t.dtype === 'int32' ? 'I32' : t.dtype === 'bool' ? 'BOOL' : 'F32';
    if (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool') {
      throw new TypeError(`Tensor "${name}" has dtype ${t.dtype}, which safetensors writing does not support.`);
    }
    return { dtype, shape: t.shape, values: t.dataSync() as ArrayLike<number> };
  }
  const dtype = t.dtype ?? (t.data instanceof Int32Array ? 'I32' : t.data instanceof Uint8Array ? 'BOOL' : 'F32');
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) {
    throw new RangeError(`Tensor "${name}" has ${t.data.length} values for shape [${t.shape}] (${n}).`);
  }
  return { dtype, shape: t.shape, values: t.data };
}

/**
 * Writes tensors to a safetensors file. The file is written under a temporary name and renamed
 * into place, so a failure never leaves a half-written file at `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, WritableTensor> | Map<string, WritableTensor>,
  options: WriteSafetensorsOptions = {},
): void {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (options.metadata) header.__metadata__ = options.metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    const { dtype, shape, values } = normalise(name, t, options.floatDtype ?? 'F32');
    const bytes = encode(dtype, values);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces to 8 bytes so tensor data starts aligned, as the reference writer does.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, len);
      fs.writeSync(fd, json);
      for (const c of chunks) fs.writeSync(fd, c);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new SafetensorsError(path, `cannot write: ${(err as Error).message}`);
  }
}
