/**
 * Quantizing to and from the packed formats in plain JavaScript, following ggml's reference
 * routines (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) bit for bit, so a weight packed here
 * equals the one llama.cpp's converter would write. The native package has faster versions; these
 * are the portable path and the oracle its tests compare against.
 */
import { floatToBf16, floatToHalf, halfToFloat } from '../safetensors/dtypes';
import { packedRowBytes, QUANT_BLOCK as BLOCK, type WeightDtype } from './formats';

// A module-local copy: transpilers that keep ES module bindings live (swc, as jest and tsx use it)
// turn every read of an imported constant into a property lookup, 5x slower in these loops.
const QUANT_BLOCK: number = BLOCK;
// Likewise Math's functions: inside jest's vm context every `Math.x` is a slow global lookup.
const { abs, floor, fround, max, min, trunc } = Math;

let halfTable: Float32Array | undefined;

/** f16 bits → float32, from a 64 Ki-entry table (decoding a scale must be cheap: one per 32 weights). */
function halfBitsToFloat(bits: number): number {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable[bits];
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** C's `roundf`: halves away from zero (Math.round rounds them up). */
function roundHalfAway(v: number): number {
  return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5);
}

function quantizeBlockQ8(src: Float32Array, at: number, dst: Uint8Array, out: number): void {
  let amax = 0;
  for (let j = 0; j < QUANT_BLOCK; j++) amax = max(amax, abs(src[at + j]));
  const d = fround(amax / 127);
  const id = d ? fround(1 / d) : 0;
  const h = floatToHalf(d);
  dst[out] = h & 0xff;
  dst[out + 1] = h >>> 8;
  for (let j = 0; j < QUANT_BLOCK; j++) dst[out + 2 + j] = roundHalfAway(fround(src[at + j] * id)) & 0xff;
}

function quantizeBlockQ4(src: Float32Array, at: number, dst: Uint8Array, out: number): void {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QUANT_BLOCK; j++) {
    const v = src[at + j];
    if (amax < abs(v)) {
      amax = abs(v);
      max = v;
    }
  }
  const d = fround(max / -8);
  const id = d ? fround(1 / d) : 0;
  const h = floatToHalf(d);
  dst[out] = h & 0xff;
  dst[out + 1] = h >>> 8;
  const half = QUANT_BLOCK / 2;
  for (let j = 0; j < half; j++) {
    // (int8_t)(x + 8.5f) truncates toward zero; x·id lies in [-8, 8], so the sum is positive.
    const lo = min(15, trunc(fround(fround(src[at + j] * id) + 8.5)));
    const hi = min(15, trunc(fround(fround(src[at + half + j] * id) + 8.5)));
    dst[out + 2 + j] = lo | (hi << 4);
  }
}

/**
 * Packs `rows` rows of `cols` float32 weights from `src` (starting at element `srcOffset`) into
 * `dst` (starting at byte `dstOffset`) in `format`.
 */
export function quantizeRowsInto(
  format: WeightDtype,
  src: Float32Array,
  rows: number,
  cols: number,
  dst: Uint8Array,
  srcOffset = 0,
  dstOffset = 0,
): void {
  const rowBytes = packedRowBytes(format, cols);
  if (src.length < srcOffset + rows * cols) {
    throw new RangeError(`quantize: src holds ${src.length - srcOffset} values, ${rows}×${cols} needed.`);
  }
  if (dst.length < dstOffset + rows * rowBytes) {
    throw new RangeError(`quantize: dst holds ${dst.length - dstOffset} bytes, ${rows * rowBytes} needed.`);
  }
  const n = rows * cols;
  switch (format) {
    case 'f32':
      dst.set(new Uint8Array(src.buffer, src.byteOffset + 4 * srcOffset, 4 * n), dstOffset);
      return;
    case 'bf16': {
      const halves = floatToBf16(src.subarray(srcOffset, srcOffset + n));
      dst.set(new Uint8Array(halves.buffer, 0, 2 * n), dstOffset); // little-endian hosts (all current)
      return;
    }
    case 'q8_0':
    case 'q4_0': {
      const quantizeBlock = format === 'q8_0' ? quantizeBlockQ8 : quantizeBlockQ4;
      const blockBytes = format === 'q8_0' ? 34 : 18;
      for (let b = 0; b < n / QUANT_BLOCK; b++) {
        quantizeBlock(src, srcOffset + b * QUANT_BLOCK, dst, dstOffset + b * blockBytes);
      }
      return;
    }
  }
}

/** Packs a whole row-major weight of `rows` × `cols`; returns the new bytes. */
export function quantizeRows(format: WeightDtype, src: Float32Array, rows: number, cols: number): Uint8Array {
  const dst = new Uint8Array(rows * packedRowBytes(format, cols));
  quantizeRowsInto(format, src, rows, cols, dst);
  return dst;
}

/**
 * Unpacks `rows` rows of `cols` weights from `src` (starting at row `firstRow`) into `dst`
 * (starting at element `dstOffset`).
 */
export function dequantizeRowsInto(
  format: WeightDtype,
  src: Uint8Array,
  cols: number,
  firstRow: number,
  rows: number,
  dst: Float32Array,
  dstOffset = 0,
): void {
  const rowBytes = packedRowBytes(format, cols);
  const start = firstRow * rowBytes;
  if (src.length < start + rows * rowBytes) {
    throw new RangeError(`dequantize: rows ${firstRow}..${firstRow + rows} lie beyond the ${src.length} packed bytes.`);
  }
  if (dst.length < dstOffset + rows * cols) {
    throw new RangeError(`dequantize: dst holds ${dst.length - dstOffset} values, ${rows * cols} needed.`);
  }
  const n = rows * cols;
  switch (format) {
    case 'f32': {
      const view = new DataView(src.buffer, src.byteOffset + start, 4 * n);
      for (let i = 0; i < n; i++) dst[dstOffset + i] = view.getFloat32(4 * i, true);
      return;
    }
    case 'bf16':
      for (let i = 0; i < n; i++) {
        f32Bits[0] = (src[start + 2 * i] | (src[start + 2 * i + 1] << 8)) << 16;
        dst[dstOffset + i] = f32[0];
      }
      return;
    case 'q8_0':
      for (let b = 0; b < n / QUANT_BLOCK; b++) {
        const at = start + 34 * b;
        const d = halfBitsToFloat(src[at] | (src[at + 1] << 8));
        const o = dstOffset + b * QUANT_BLOCK;
        for (let j = 0; j < QUANT_BLOCK; j++) dst[o + j] = ((src[at + 2 + j] << 24) >> 24) * d;
      }
      return;
    case 'q4_0':
      for (let b = 0; b < n / QUANT_BLOCK; b++) {
        const at = start + 18 * b;
        const d = halfBitsToFloat(src[at] | (src[at + 1] << 8));
        const o = dstOffset + b * QUANT_BLOCK;
        for (let j = 0; j < QUANT_BLOCK / 2; j++) {
          const q = src[at + 2 + j];
          dst[o + j] = ((q & 0x0f) - 8) * d;
          dst[o + j + QUANT_BLOCK / 2] = ((q >>> 4) - 8) * d;
        }
      }
      return;
  }
}
