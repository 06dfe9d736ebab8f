/**
 * Independent references for the native kernels, in plain JS: ggml's quantization rules with
 * float32 arithmetic emulated by Math.fround (products and quotients of float32 values are exact
 * or correctly rounded in float64 first), half / bf16 conversions by value comparisons rather
 * than the bit tricks the C uses, and float64 dot products.
 */
import type { Format } from '../src';

export const EPS32 = 2 ** -24; // unit roundoff of float32

/** Seeded generator (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values in (-1, 1) times a per-32-block magnitude between 1e-3 and 1e3. */
export function randomFloats(n: number, seed: number): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(n);
  let scale = 1;
  for (let i = 0; i < n; i++) {
    if (i % 32 === 0) scale = 10 ** Math.floor(next() * 7 - 3);
    out[i] = (next() * 2 - 1) * scale;
  }
  return out;
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const r = x - f;
  if (r > 0.5) return f + 1;
  if (r < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function f32ToF16(value: number): number {
  const v = Math.fround(value);
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (1024 = smallest normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const m = roundHalfEven(a / 2 ** (e - 10)); // 1024..2048, exact scaling
  return m === 2048 ? sign | ((e + 16) << 10) : sign | ((e + 15) << 10) | (m - 1024);
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** The value of a positive bf16 bit pattern, with exponent 255 read as 2^128 (for rounding). */
function bf16Magnitude(b: number): number {
  const exp = b >> 7;
  const mant = b & 0x7f;
  return exp === 0 ? (mant / 128) * 2 ** -126 : (1 + mant / 128) * 2 ** (exp - 127);
}

/** float32 bits -> bf16 bits: nearest, ties to even, NaN kept NaN (quiet). */
export function f32BitsToBf16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const mag = bits & 0x7fffffff;
  if (mag > 0x7f800000) return (bits >>> 16) | 0x40;
  if (mag === 0x7f800000) return sign | 0x7f80;
  const f = new Float32Array(new Uint32Array([mag]).buffer)[0];
  const t = mag >>> 16;
  const lo = bf16Magnitude(t),
    hi = bf16Magnitude(t + 1);
  const below = f - lo,
    above = hi - f;
  const pick = below < above ? t : below > above ? t + 1 : t % 2 === 0 ? t : t + 1;
  return sign | pick;
}

export function bf16ToF32(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0];
}

/** x86 float -> int8 as the C reference compiles it: truncation; NaN / infinity give 0. */
function truncToInt8(v: number): number {
  const t = Number.isFinite(v) ? Math.trunc(v) : 0;
  return (t << 24) >> 24;
}

function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v); // Math.round rounds halves up
}

export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const v = Math.abs(x[b * 32 + j]);
      // biome-ignore lint/complexity/useMathMinMax: ggml's MAX macro (a NaN is kept until the next element), which Math.max is not
      amax = amax > v ? amax : v;
    }
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const q = roundAway(Math.fround(x[b * 32 + j] * id));
      view.setInt8(b * 34 + 2 + j, Number.isFinite(q) ? q : 0);
    }
  }
  return out;
}

export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, truncToInt8(Math.fround(Math.fround(x[b * 32 + j] * id) + 8.5)));
      const hi = Math.min(15, truncToInt8(Math.fround(Math.fround(x[b * 32 + 16 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = ((lo & 0xff) | (hi << 4)) & 0xff;
    }
  }
  return out;
}

export function quantizeBf16(x: Float32Array): Uint8Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return new Uint8Array(out.buffer);
}

export function quantize(format: Format, x: Float32Array): Uint8Array {
  switch (format) {
    case 'f32':
      return new Uint8Array(x.slice().buffer);
    case 'bf16':
      return quantizeBf16(x);
    case 'q8_0':
      return quantizeQ8_0(x);
    case 'q4_0':
      return quantizeQ4_0(x);
  }
}

export function dequantize(format: Format, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  if (format === 'f32') for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  if (format === 'bf16') for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true));
  if (format === 'q8_0')
    for (let b = 0; b < n / 32; b++) {
      const d = f16ToF32(view.getUint16(b * 34, true));
      for (let j = 0; j < 32; j++) out[b * 32 + j] = view.getInt8(b * 34 + 2 + j) * d;
    }
  if (format === 'q4_0')
    for (let b = 0; b < n / 32; b++) {
      const d = f16ToF32(view.getUint16(b * 18, true));
      for (let j = 0; j < 16; j++) {
        const byte = view.getUint8(b * 18 + 2 + j);
        out[b * 32 + j] = ((byte & 15) - 8) * d;
        out[b * 32 + 16 + j] = ((byte >> 4) - 8) * d;
      }
    }
  return out;
}

export interface Reference {
  /** The exact (float64) value of what the kernel computes in float32. */
  value: Float64Array;
  /** Bound on the kernel's float32 rounding: (terms + 4) * 2^-23 * sum of |terms|. */
  roundoff: Float64Array;
  /** q8_0 / q4_0: float64 dequantized W times the unquantized x, and the bound
   * sum_k |W[o, k]| * |x[n, k] - xq[n, k]| that the activation quantization allows. */
  floatValue?: Float64Array;
  activationError?: Float64Array;
}

/**
 * What matmul(format, packed, out, in, x, n) should give: y[r, o] = sum_k x[r, k] W[o, k], with
 * x quantized to q8_0 per block for the block formats (block dot products are exact integers,
 * then scaled by d_w * d_x).
 */
export function matmulReference(format: Format, packed: Uint8Array, out: number, inF: number, x: Float32Array, n: number): Reference {
  const w = dequantize(format, packed, out * inF);
  const value = new Float64Array(n * out),
    roundoff = new Float64Array(n * out);
  if (format === 'f32' || format === 'bf16') {
    for (let r = 0; r < n; r++)
      for (let o = 0; o < out; o++) {
        let s = 0,
          m = 0;
        for (let k = 0; k < inF; k++) {
          const t = w[o * inF + k] * x[r * inF + k];
          s += t;
          m += Math.abs(t);
        }
        value[r * out + o] = s;
        roundoff[r * out + o] = (inF + 4) * 2 * EPS32 * m;
      }
    return { value, roundoff };
  }
  const nb = inF / 32;
  const blockBytes = format === 'q8_0' ? 34 : 18;
  const wview = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  const floatValue = new Float64Array(n * out),
    activationError = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    const xr = x.subarray(r * inF, (r + 1) * inF);
    const xq = quantizeQ8_0(xr);
    const xview = new DataView(xq.buffer);
    const xhat = dequantize('q8_0', xq, inF);
    for (let o = 0; o < out; o++) {
      let s = 0,
        m = 0;
      for (let b = 0; b < nb; b++) {
        const wb = (o * nb + b) * blockBytes;
        const dw = f16ToF32(wview.getUint16(wb, true)),
          dx = f16ToF32(xview.getUint16(b * 34, true));
        let isum = 0;
        for (let j = 0; j < 32; j++) {
          const qx = xview.getInt8(b * 34 + 2 + j);
          const qw = format === 'q8_0' ? wview.getInt8(wb + 2 + j) : ((wview.getUint8(wb + 2 + (j % 16)) >> (j < 16 ? 0 : 4)) & 15) - 8;
          isum += qw * qx;
        }
        s += dw * dx * isum;
        m += Math.abs(dw * dx * isum);
      }
      value[r * out + o] = s;
      roundoff[r * out + o] = (nb + 4) * 2 * EPS32 * m;
      let f = 0,
        e = 0;
      for (let k = 0; k < inF; k++) {
        f += w[o * inF + k] * xr[k];
        e += Math.abs(w[o * inF + k]) * Math.abs(xr[k] - xhat[k]);
      }
      floatValue[r * out + o] = f;
      activationError[r * out + o] = e;
    }
  }
  return { value, roundoff, floatValue, activationError };
}

/** C = op(A) op(B) in float64, with the float32 rounding bound (K + 4) * 2^-23 * sum |a b|. */
export function gemmReference(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  ta: boolean,
  tb: boolean,
): { value: Float64Array; roundoff: Float64Array } {
  const value = new Float64Array(M * N),
    roundoff = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0,
        m = 0;
      for (let k = 0; k < K; k++) {
        const t = a[ta ? k * M + i : i * K + k] * b[tb ? j * K + k : k * N + j];
        s += t;
        m += Math.abs(t);
      }
      value[i * N + j] = s;
      roundoff[i * N + j] = (K + 4) * 2 * EPS32 * m;
    }
  return { value, roundoff };
}

/** Index and size of the worst violation of |got - want| <= tol, or null. */
export function firstViolation(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number>): string | null {
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol[i] + 1e-37))
      return `element ${i}: got ${got[i]}, want ${want[i]} (error ${err.toExponential(3)}, tolerance ${tol[i].toExponential(3)})`;
  }
  return null;
}
