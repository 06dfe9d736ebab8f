/**
 * The GGUF container (version 3), as ggml's `gguf.h` describes it: a header with typed key-value
 * metadata and tensor infos, then the tensor data, every tensor starting on `general.alignment`.
 * All numbers are little-endian; strings are a u64 byte length and UTF-8 bytes without a NUL.
 */
import { packedByteLength } from '../packed/formats';
import { quotedName } from '../safetensors/errors';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = 'general.alignment';
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;
/** ggml's GGML_MAX_NAME: names must be shorter (the C struct keeps a NUL-terminated copy). */
export const GGUF_MAX_NAME_BYTES = 64;

/** gguf.h `enum gguf_type`: how a metadata value is stored. */
export const GGUF_VALUE_TYPES = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** A metadata value type other than array. */
export type GgufScalarType = Exclude<keyof typeof GGUF_VALUE_TYPES, 'array'>;

/** A typed metadata value; 64-bit integers are bigints when read back. */
export type GgufValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint | number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: GgufScalarType; value: readonly (number | bigint | boolean | string)[] };

/** Constructors of {@link GgufValue}s, so metadata reads like `['llama.block_count', ggufValue.u32(40)]`. */
export const ggufValue = {
  u8: (value: number): GgufValue => ({ type: 'u8', value }),
  i8: (value: number): GgufValue => ({ type: 'i8', value }),
  u16: (value: number): GgufValue => ({ type: 'u16', value }),
  i16: (value: number): GgufValue => ({ type: 'i16', value }),
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'u64', value }),
  i64: (value: bigint | number): GgufValue => ({ type: 'i64', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  f64: (value: number): GgufValue => ({ type: 'f64', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  string: (value: string): GgufValue => ({ type: 'string', value }),
  array: (itemType: GgufScalarType, value: readonly (number | bigint | boolean | string)[]): GgufValue => ({
    type: 'array',
    itemType,
    value,
  }),
};

/** ggml.h `enum ggml_type` values of the tensor types graniteflow writes and reads. */
export const GGML_TYPES = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;

/** A ggml tensor type by name. */
export type GgmlType = keyof typeof GGML_TYPES;

export function isGgmlType(s: unknown): s is GgmlType {
  return typeof s === 'string' && Object.hasOwn(GGML_TYPES, s);
}

/** The ggml type name of a numeric `ggml_type`, or undefined for types graniteflow does not know. */
export function ggmlTypeName(id: number): GgmlType | undefined {
  return (Object.keys(GGML_TYPES) as GgmlType[]).find((k) => GGML_TYPES[k] === id);
}

/** Weights per block of a ggml type (32 for Q8_0 / Q4_0, else 1). */
export function ggmlBlockWeights(type: GgmlType): number {
  return type === 'Q8_0' || type === 'Q4_0' ? 32 : 1;
}

/**
 * Bytes of a tensor of row-major `shape` (the last dimension is the row, ggml's ne[0]) in `type`;
 * throws a RangeError when a quantized row is not whole blocks.
 */
export function ggmlByteLength(type: GgmlType, shape: readonly number[]): number {
  switch (type) {
    case 'F32':
      return packedByteLength('f32', shape);
    case 'BF16':
      return packedByteLength('bf16', shape);
    case 'F16':
      return 2 * shape.reduce((a, b) => a * b, 1);
    case 'Q8_0':
      return packedByteLength('q8_0', shape);
    case 'Q4_0':
      return packedByteLength('q4_0', shape);
  }
}

/**
 * Any problem writing or reading a GGUF file: one paragraph naming the file and, where known, the
 * tensor or metadata key.
 */
export class GgufError extends Error {
  override name = 'GgufError';

  constructor(
    readonly file: string,
    detail: string,
    readonly where?: { tensor?: string; key?: string },
  ) {
    const at =
      where?.tensor !== undefined
        ? `: tensor ${quotedName(where.tensor)}`
        : where?.key !== undefined
          ? `: metadata key ${quotedName(where.key)}`
          : '';
    super(`${file}${at}: ${detail}`);
  }
}

/** `n` rounded up to a multiple of `alignment`. */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
