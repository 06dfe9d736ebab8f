/** Element types of the safetensors format that graniteflow reads and writes. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isSafetensorsDtype(s: string): s is SafetensorsDtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

/** A tensor decoded to a dtype tfjs holds: float32 (from F32/F16/BF16), int32 (integers) or bool. */
export type DecodedTensor =
  | { dtype: 'float32'; shape: number[]; data: Float32Array }
  | { dtype: 'int32'; shape: number[]; data: Int32Array }
  | { dtype: 'bool'; shape: number[]; data: Uint8Array };

/** IEEE half → float32. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const halfScratch = new Float32Array(1);
const halfScratchBits = new Uint32Array(halfScratch.buffer);

/** float32 → IEEE half, rounding to nearest even. */
export function floatToHalf(f: number): number {
  halfScratch[0] = f;
  const u = halfScratchBits[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** float32 → bfloat16 bits, rounding to nearest even (NaN stays NaN). */
export function floatToBf16(f32: Float32Array): Uint16Array {
  const u = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = (x >>> 16) | 0x40;
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** True on little-endian hosts (all current ones), where typed arrays already match the file's byte order. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The first `n` little-endian 16-bit values of `bytes` as a Uint16Array: a view when the bytes are
 * aligned (the common case), else a copy — safetensors does not align tensor data.
 */
function uint16View(bytes: Uint8Array, n: number): Uint16Array {
  if (!LITTLE_ENDIAN) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return Uint16Array.from({ length: n }, (_, i) => view.getUint16(2 * i, true));
  }
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  return new Uint16Array(bytes.slice(0, 2 * n).buffer);
}

/**
 * Decodes little-endian raw bytes to a tfjs-compatible array. `bytes` may sit at any offset
 * (safetensors does not align tensors), so multi-byte types go through a DataView or a copy.
 * Returns a string describing the problem for values tfjs cannot hold (I64 beyond int32).
 */
export function decodeTensorBytes(dtype: SafetensorsDtype, shape: number[], bytes: Uint8Array): DecodedTensor | string {
  const n = shape.reduce((a, b) => a * b, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      const data = new Float32Array(n);
      new Uint8Array(data.buffer).set(bytes.subarray(0, n * 4));
      return { dtype: 'float32', shape, data };
    }
    case 'BF16': {
      const data = new Float32Array(n);
      const bits = new Uint32Array(data.buffer);
      const halves = uint16View(bytes, n);
      for (let i = 0; i < n; i++) bits[i] = halves[i] << 16;
      return { dtype: 'float32', shape, data };
    }
    case 'F16': {
      const data = new Float32Array(n);
      const halves = uint16View(bytes, n);
      for (let i = 0; i < n; i++) data[i] = halfToFloat(halves[i]);
      return { dtype: 'float32', shape, data };
    }
    case 'I32': {
      const data = new Int32Array(n);
      new Uint8Array(data.buffer).set(bytes.subarray(0, n * 4));
      return { dtype: 'int32', shape, data };
    }
    case 'I64': {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) {
          return `I64 value ${v} at element ${i} does not fit int32 (tfjs has no int64)`;
        }
        data[i] = Number(v);
      }
      return { dtype: 'int32', shape, data };
    }
    case 'I8': {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) data[i] = view.getInt8(i);
      return { dtype: 'int32', shape, data };
    }
    case 'U8': {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) data[i] = bytes[i];
      return { dtype: 'int32', shape, data };
    }
    case 'BOOL': {
      const data = new Uint8Array(n);
      for (let i = 0; i < n; i++) data[i] = bytes[i] ? 1 : 0;
      return { dtype: 'bool', shape, data };
    }
  }
}

/** Dtypes {@link decodeFloatsInto} widens to float32. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

export function isFloatDtype(d: SafetensorsDtype): d is FloatDtype {
  return d === 'F32' || d === 'F16' || d === 'BF16';
}

/**
 * Decodes float tensor bytes into `out` (float32), optionally transposing a 2-D [rows, cols]
 * tensor to [cols, rows] in the same pass: one read of the bytes, one write of the destination,
 * no intermediate array (the destination may be backend memory, see `tensorFromWriter`).
 */
export function decodeFloatsInto(
  dtype: FloatDtype,
  bytes: Uint8Array,
  out: Float32Array,
  transposeFrom?: readonly [rows: number, cols: number],
): void {
  const n = out.length;
  const read = floatReader(dtype, bytes, n);
  if (transposeFrom === undefined) {
    for (let i = 0; i < n; i++) out[i] = read(i);
    return;
  }
  const [rows, cols] = transposeFrom;
  // Tiles keep the strided writes within a few pages at a time.
  const tile = 32;
  for (let r0 = 0; r0 < rows; r0 += tile) {
    const r1 = Math.min(r0 + tile, rows);
    for (let c0 = 0; c0 < cols; c0 += tile) {
      const c1 = Math.min(c0 + tile, cols);
      for (let c = c0; c < c1; c++) {
        const dst = c * rows;
        for (let r = r0; r < r1; r++) out[dst + r] = read(r * cols + c);
      }
    }
  }
}

/** Element reader over raw bytes for a float dtype. */
function floatReader(dtype: FloatDtype, bytes: Uint8Array, n: number): (i: number) => number {
  switch (dtype) {
    case 'F32': {
      const f =
        LITTLE_ENDIAN && bytes.byteOffset % 4 === 0
          ? new Float32Array(bytes.buffer, bytes.byteOffset, n)
          : (decodeTensorBytes('F32', [n], bytes) as { data: Float32Array }).data;
      return (i) => f[i];
    }
    case 'BF16': {
      const halves = uint16View(bytes, n);
      const word = new Uint32Array(1);
      const asFloat = new Float32Array(word.buffer);
      return (i) => {
        word[0] = halves[i] << 16;
        return asFloat[0];
      };
    }
    case 'F16': {
      const halves = uint16View(bytes, n);
      return (i) => halfToFloat(halves[i]);
    }
  }
}
