import { packedRowBytes, type PackedFormat } from '@graniteflow/core';
import { moeDispatchImpl } from './MoeDispatch_impl';
import { swigluImpl } from './MoeSwiGLU_impl';
import { packedRows } from './packed_rows';

/**
 * `y [nRows, outFeatures] = x [nRows, inFeatures] · Wᵀ` for a weight W [outFeatures, inFeatures]
 * whose rows are packed back to back in `w` (the contract of `NativeAddon.matmul`). `y` is
 * overwritten.
 */
export type PackedRowsMatMul = (
  format: PackedFormat,
  w: Uint8Array,
  outFeatures: number,
  inFeatures: number,
  x: Float32Array,
  nRows: number,
  y: Float32Array,
) => void;

/**
 * Plain-JS {@link PackedRowsMatMul}. One row of x (decode): each weight row is dotted with it
 * straight from the packed bytes. More rows: each weight row is unpacked once into a scratch row,
 * then multiplied with every row of x. The float32 weight is never held whole.
 */
export const jsPackedMatMul: PackedRowsMatMul = (format, w, outFeatures, inFeatures, x, nRows, y) => {
  const rows = packedRows(format, w, inFeatures);
  if (nRows === 1) {
    for (let o = 0; o < outFeatures; o++) y[o] = rows.dot(o, x, 0);
    return;
  }
  const row = new Float32Array(inFeatures);
  const cols4 = inFeatures - (inFeatures % 4);
  for (let o = 0; o < outFeatures; o++) {
    rows.unpack(o, row);
    for (let r = 0; r < nRows; r++) {
      const base = r * inFeatures;
      let s0 = 0,
        s1 = 0,
        s2 = 0,
        s3 = 0;
      let c = 0;
      for (; c < cols4; c += 4) {
        s0 += row[c] * x[base + c];
        s1 += row[c + 1] * x[base + c + 1];
        s2 += row[c + 2] * x[base + c + 2];
        s3 += row[c + 3] * x[base + c + 3];
      }
      for (; c < inFeatures; c++) s0 += row[c] * x[base + c];
      y[r * outFeatures + o] = s0 + s1 + s2 + s3;
    }
  }
};

/**
 * Buffers of one expert group of up to `rows` tokens: its gathered inputs `xs` [rows, H], gate/up
 * `a` [rows, 2I], `act` [rows, I] and outputs `ys` [rows, H].
 */
export interface GroupBuffers {
  rows: number;
  xs: Float32Array;
  a: Float32Array;
  act: Float32Array;
  ys: Float32Array;
}

/** Floats {@link groupBuffersIn} needs for groups of `rows` tokens. */
export function groupBufferFloats(rows: number, h: number, i: number): number {
  return rows * (2 * h + 3 * i);
}

/** {@link GroupBuffers} for `rows` tokens carved out of `space` (at least {@link groupBufferFloats} floats). */
export function groupBuffersIn(space: Float32Array, rows: number, h: number, i: number): GroupBuffers {
  const ends = [rows * h, rows * (h + 2 * i), rows * (h + 3 * i), rows * (2 * h + 3 * i)];
  return {
    rows,
    xs: space.subarray(0, ends[0]),
    a: space.subarray(ends[0], ends[1]),
    act: space.subarray(ends[1], ends[2]),
    ys: space.subarray(ends[2], ends[3]),
  };
}

/** Sizes of one packed routed-experts call. */
export interface PackedExpertsDims {
  /** tokens */
  n: number;
  /** hidden size */
  h: number;
  /** expert intermediate size */
  i: number;
  /** experts per token */
  k: number;
  /** experts */
  e: number;
}

/** Formats of the packed [E, 2I, H] input and [E, H, I] output weights. */
export interface PackedExpertsFormats {
  inputFormat: PackedFormat;
  outputFormat: PackedFormat;
}

/** Throws unless every routed expert id lies in [0, e) (a stray id would index past the weights). */
function checkExpertIds(indices: Int32Array, k: number, e: number): void {
  for (let s = 0; s < indices.length; s++) {
    const id = indices[s];
    if (!(id >= 0 && id < e)) {
      throw new RangeError(`MoePackedExperts: indices[${Math.floor(s / k)}, ${s % k}] is ${id}, outside the ${e} experts [0, ${e}).`);
    }
  }
}

/**
 * Routed SwiGLU experts over packed weights:
 * `y[n] = Σ_j w[n,j] · W2[e]·(silu(W1[e][:I]·x[n]) ⊙ W1[e][I:]·x[n])`, e = indices[n,j].
 *
 * Slots are grouped by expert (a stable counting sort); each non-empty expert's tokens are gathered
 * into a contiguous block of at most `maxGroup` rows and multiplied by `matMul` with that expert's
 * contiguous row range of `inputLinear` ([2I, H] rows) and `outputLinear` ([H, I] rows), passed as
 * subarrays (no copy). Unselected experts are never read. One token (decode) is the case of k groups
 * of one row; many tokens (prefill) share each expert's rows. `y` [N, H] arrives zero-filled.
 * `buffers` (e.g. in the wasm heap, for a `matMul` that needs its arrays there) bound the group
 * size too; by default they are allocated for the largest group.
 */
export function packedExpertsImpl(
  x: Float32Array,
  inputLinear: Uint8Array,
  outputLinear: Uint8Array,
  indices: Int32Array,
  weights: Float32Array,
  y: Float32Array,
  { n, h, i, k, e }: PackedExpertsDims,
  { inputFormat, outputFormat }: PackedExpertsFormats,
  matMul: PackedRowsMatMul = jsPackedMatMul,
  maxGroup = Infinity,
  buffers?: GroupBuffers,
): void {
  const slots = n * k;
  checkExpertIds(indices.subarray(0, slots), k, e);
  const order = new Int32Array(slots);
  const tokens = new Int32Array(slots);
  const offsets = new Int32Array(e + 1);
  moeDispatchImpl(indices.subarray(0, slots), k, e, order, tokens, offsets);
  let largest = 0;
  for (let ex = 0; ex < e; ex++) largest = Math.max(largest, offsets[ex + 1] - offsets[ex]);
  const group = Math.max(1, Math.min(largest, maxGroup, buffers?.rows ?? Infinity));
  const { xs, a, act, ys } = buffers ?? groupBuffersIn(new Float32Array(groupBufferFloats(group, h, i)), group, h, i);
  const inputExpertBytes = 2 * i * packedRowBytes(inputFormat, h);
  const outputExpertBytes = h * packedRowBytes(outputFormat, i);
  for (let ex = 0; ex < e; ex++) {
    const w1 = inputLinear.subarray(ex * inputExpertBytes, (ex + 1) * inputExpertBytes);
    const w2 = outputLinear.subarray(ex * outputExpertBytes, (ex + 1) * outputExpertBytes);
    for (let start = offsets[ex]; start < offsets[ex + 1]; start += group) {
      const c = Math.min(group, offsets[ex + 1] - start);
      for (let t = 0; t < c; t++) xs.set(x.subarray(tokens[start + t] * h, (tokens[start + t] + 1) * h), t * h);
      matMul(inputFormat, w1, 2 * i, h, xs.subarray(0, c * h), c, a.subarray(0, c * 2 * i));
      swigluImpl(a, c, i, act);
      matMul(outputFormat, w2, h, i, act.subarray(0, c * i), c, ys.subarray(0, c * h));
      for (let t = 0; t < c; t++) {
        const g = weights[order[start + t]];
        const dst = tokens[start + t] * h;
        for (let col = 0; col < h; col++) y[dst + col] += g * ys[t * h + col];
      }
    }
  }
}
