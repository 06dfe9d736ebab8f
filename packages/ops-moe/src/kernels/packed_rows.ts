/**
 * Reading rows of a packed weight (GGUF block layouts, see `@graniteflow/core`'s `formats.ts`) the
 * way the expert kernels need it: a dot product straight from the packed bytes, or a row unpacked
 * into a scratch row. Written for speed in every build: block sizes are local constants (an
 * imported binding can compile to a getter call per access, several times slower in a hot loop),
 * and scales come from a local f16 table. Core's `dequantizeRowsInto` is the oracle they are tested
 * against.
 */
import { halfToFloat, type PackedFormat } from '@graniteflow/core';

/** Weights per Q8_0 / Q4_0 block. */
const QK = 32;
const Q8_BLOCK_BYTES = 34;
const Q4_BLOCK_BYTES = 18;

let halfTable: Float32Array | undefined;

function halves(): Float32Array {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfToFloat(bits);
  }
  return halfTable;
}

/** The rows of one packed [rows, cols] weight. */
export interface PackedRowReader {
  /** Σ_c W[row, c] · x[xOff + c], read from the packed bytes. */
  dot(row: number, x: Float32Array, xOff: number): number;
  /** W[row, :] unpacked into `dst[0 .. cols)`. */
  unpack(row: number, dst: Float32Array): void;
}

function bf16Rows(w: Uint8Array, cols: number): PackedRowReader {
  // bf16 is the top half of a float32: widening is a shift of the raw bits.
  const aligned = w.byteOffset % 2 === 0 ? w : w.slice();
  const u16 = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 1);
  const unpack = (row: number, dst: Float32Array) => {
    const bits = new Uint32Array(dst.buffer, dst.byteOffset, cols);
    const at = row * cols;
    for (let c = 0; c < cols; c++) bits[c] = u16[at + c] << 16;
  };
  let scratch = new Float32Array(cols);
  return {
    unpack,
    dot(row, x, xOff) {
      if (scratch.length !== cols) scratch = new Float32Array(cols);
      unpack(row, scratch);
      let s0 = 0,
        s1 = 0;
      let c = 0;
      for (; c + 1 < cols; c += 2) {
        s0 += scratch[c] * x[xOff + c];
        s1 += scratch[c + 1] * x[xOff + c + 1];
      }
      if (c < cols) s0 += scratch[c] * x[xOff + c];
      return s0 + s1;
    },
  };
}

function q8Rows(w: Uint8Array, cols: number): PackedRowReader {
  const d16 = halves();
  const q = new Int8Array(w.buffer, w.byteOffset, w.length);
  const blocks = cols / QK;
  const rowBytes = blocks * Q8_BLOCK_BYTES;
  return {
    dot(row, x, xOff) {
      let acc = 0;
      for (let b = 0, at = row * rowBytes, o = xOff; b < blocks; b++, at += Q8_BLOCK_BYTES, o += QK) {
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0;
        const v = at + 2;
        for (let j = 0; j < QK; j += 4) {
          s0 += q[v + j] * x[o + j];
          s1 += q[v + j + 1] * x[o + j + 1];
          s2 += q[v + j + 2] * x[o + j + 2];
          s3 += q[v + j + 3] * x[o + j + 3];
        }
        acc += d16[w[at] | (w[at + 1] << 8)] * (s0 + s1 + s2 + s3);
      }
      return acc;
    },
    unpack(row, dst) {
      for (let b = 0, at = row * rowBytes, o = 0; b < blocks; b++, at += Q8_BLOCK_BYTES, o += QK) {
        const d = d16[w[at] | (w[at + 1] << 8)];
        for (let j = 0; j < QK; j++) dst[o + j] = q[at + 2 + j] * d;
      }
    },
  };
}

function q4Rows(w: Uint8Array, cols: number): PackedRowReader {
  const d16 = halves();
  const blocks = cols / QK;
  const rowBytes = blocks * Q4_BLOCK_BYTES;
  const half = QK / 2;
  return {
    dot(row, x, xOff) {
      let acc = 0;
      for (let b = 0, at = row * rowBytes, o = xOff; b < blocks; b++, at += Q4_BLOCK_BYTES, o += QK) {
        // Byte j holds weight j (low nibble) and weight j + 16 (high nibble), each biased by 8.
        let s0 = 0,
          s1 = 0,
          sx = 0;
        for (let j = 0; j < half; j++) {
          const v = w[at + 2 + j];
          const xl = x[o + j];
          const xh = x[o + half + j];
          s0 += (v & 15) * xl;
          s1 += (v >>> 4) * xh;
          sx += xl + xh;
        }
        acc += d16[w[at] | (w[at + 1] << 8)] * (s0 + s1 - 8 * sx);
      }
      return acc;
    },
    unpack(row, dst) {
      for (let b = 0, at = row * rowBytes, o = 0; b < blocks; b++, at += Q4_BLOCK_BYTES, o += QK) {
        const d = d16[w[at] | (w[at + 1] << 8)];
        for (let j = 0; j < half; j++) {
          const v = w[at + 2 + j];
          dst[o + j] = ((v & 15) - 8) * d;
          dst[o + half + j] = ((v >>> 4) - 8) * d;
        }
      }
    },
  };
}

/** A reader of the rows of `cols` weights packed back to back in `w` (whole rows; not checked here). */
export function packedRows(format: PackedFormat, w: Uint8Array, cols: number): PackedRowReader {
  switch (format) {
    case 'bf16':
      return bf16Rows(w, cols);
    case 'q8_0':
      return q8Rows(w, cols);
    case 'q4_0':
      return q4Rows(w, cols);
  }
}
