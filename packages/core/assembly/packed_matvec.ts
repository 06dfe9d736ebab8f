// Packed matmul kernels (AssemblyScript → WebAssembly SIMD128), y[n, out] = x[n, in] · Wᵀ for a
// packed W [out, in] in GGUF block layouts (see src/packed/formats.ts). The module imports its
// memory (the tfjs wasm backend's heap), so every pointer below is a byte address into that heap:
// weights are read where the PackedTensor holds them, y is written into the output tensor. Nothing
// here allocates; scratch space (the quantized activations) is the caller's.
//
// Two ways to multiply by a quantized weight were built and measured (bench/run.ts, which still
// times both; figures in the README):
//   (a) `matmul_q8_0` / `matmul_q4_0`: the activations are quantized once per call, per 32-block,
//       to integers held as int16 (`quantize_rows`), and each block is an integer dot product:
//       int8/int4 weights widened to i16x8, `i32x4.dot_i16x8_s`, then one f32 multiply by the two
//       scales. About 20 SIMD instructions per block and row.
//   (b) `matmul_q8_0_f32` / `matmul_q4_0_f32`: the weights widened all the way to f32x4 and
//       multiplied with the float32 activations: 22 instructions to widen a block, then 25 per row.
// With the same loops (one weight row at a time), (a) was 1.5–2.1× faster than (b) at n = 1 and
// 1.4–1.8× at n = 64, at H-Micro's 8192×2048 and 2048×8192 (2026-12-01, one Xeon core, Node 20),
// so PackedMatMul runs (a), and only (a) got the decode loop below that reads four weight rows at
// once. With int16 activations (qmax 32767) rather than llama.cpp's int8 (127) the cost is the
// same, since the dot instruction takes i16 lanes either way, and the activation rounding error is
// 258× smaller.
//
// Prefill multiplies four activation rows per loaded weight block; decoding (and the rows left
// over) multiplies four weight rows, one from each quarter of W, per loaded activation block.

import { horizontalSum } from '../../../tools/build-wasm/assembly/simd';

// ---------------------------------------------------------------------------------------------
// Helpers

/** IEEE half bits → f32. Rebiasing the exponent by a multiply is exact for normal and subnormal
 * halves (WebAssembly keeps f32 subnormals); infinities and NaNs take the exponent as it is. */
// @ts-ignore: decorator
@inline function halfToFloat(h: u32): f32 {
  const magnitude = (h & 0x7fff) << 13;
  const rebiased = reinterpret<f32>(magnitude) * reinterpret<f32>(0x77800000); // × 2^112
  const special = reinterpret<f32>(magnitude | 0x7f800000);
  const v = select<f32>(special, rebiased, (h & 0x7c00) == 0x7c00);
  return reinterpret<f32>(reinterpret<u32>(v) | ((h & 0x8000) << 16));
}

/** halfToFloat on four u32 lanes at once. */
// @ts-ignore: decorator
@inline function halvesToFloats(h: v128): v128 {
  const magnitude = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const rebiased = f32x4.mul(magnitude, f32x4.splat(reinterpret<f32>(0x77800000)));
  const special = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  const v = v128.bitselect(v128.or(magnitude, i32x4.splat(0x7f800000)), rebiased, special);
  return v128.or(v, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/**
 * The f16 scales at p, p + stride, p + 2·stride, p + 3·stride (four weight rows' blocks) as f32x4:
 * decoded together, in a quarter of the scalar decoding's instructions per block.
 */
// @ts-ignore: decorator
@inline function fourHalves(p: usize, stride: usize): v128 {
  let h = i32x4.splat(<i32>load<u16>(p));
  h = i32x4.replace_lane(h, 1, <i32>load<u16>(p + stride));
  h = i32x4.replace_lane(h, 2, <i32>load<u16>(p + 2 * stride));
  h = i32x4.replace_lane(h, 3, <i32>load<u16>(p + 3 * stride));
  return halvesToFloats(h);
}

/** acc + isum · scale, a block's integer dot product scaled back to real units (scale = dw · dx). */
// @ts-ignore: decorator
@inline function scaledAdd(acc: v128, isum: v128, scale: f32): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(scale)));
}

/** scaledAdd with the scale already in every lane. */
// @ts-ignore: decorator
@inline function splatScaledAdd(acc: v128, isum: v128, scale: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
}

/** A q4_0 block's 16 nibble bytes as int8 minus 8: the low nibbles are weights 0–15. */
// @ts-ignore: decorator
@inline function q4Low(v: v128): v128 {
  return i8x16.sub(v128.and(v, i8x16.splat(0x0f)), i8x16.splat(8));
}

/** The high nibbles, weights 16–31. A 16-bit shift then the mask: WebAssembly's i8x16.shr_u has no
 * x86 instruction and is emulated by exactly these two. */
// @ts-ignore: decorator
@inline function q4High(v: v128): v128 {
  return i8x16.sub(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)), i8x16.splat(8));
}

/** Weights 0–15 of the block at p as int8x16 (q8_0: [f16 d][32 × int8]; q4_0: [f16 d][16 nibble bytes]). */
// @ts-ignore: decorator
@inline function weightsLow(p: usize, q4: bool): v128 {
  return q4 ? q4Low(v128.load(p, 2)) : v128.load(p, 2);
}

/** Weights 16–31 of the block at p as int8x16. */
// @ts-ignore: decorator
@inline function weightsHigh(p: usize, q4: bool): v128 {
  return q4 ? q4High(v128.load(p, 2)) : v128.load(p, 18);
}

/** Σ of a block's 32 products: weights lo, hi (int8x16) widened to i16x8, activations x0..x3 (i16x8). */
// @ts-ignore: decorator
@inline function blockDot(lo: v128, hi: v128, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const s01 = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1));
  const s23 = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3));
  return i32x4.add(s01, s23);
}

/** blockDot against the 32 int16 activations at q. */
// @ts-ignore: decorator
@inline function blockDotAt(lo: v128, hi: v128, q: usize): v128 {
  return blockDot(lo, hi, v128.load(q), v128.load(q, 16), v128.load(q, 32), v128.load(q, 48));
}

// ---------------------------------------------------------------------------------------------
// (a) integer dot products against quantized activations

/**
 * Quantizes x [n, k] (float32, k a multiple of 32) per 32-block: scales [n, k/32] float32
 * d = amax / qmax, and quants [n, k] int16 round(x / d) (ties to even). qmax ≤ 32767.
 */
export function quantize_rows(x: usize, n: i32, k: i32, qmax: f32, scales: usize, quants: usize): void {
  const blocks = k >> 5;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const i = r * blocks + b;
      const src = x + ((<usize>i) << 7);
      const v0 = v128.load(src), v1 = v128.load(src, 16), v2 = v128.load(src, 32), v3 = v128.load(src, 48);
      const v4 = v128.load(src, 64), v5 = v128.load(src, 80), v6 = v128.load(src, 96), v7 = v128.load(src, 112);
      const m01 = f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), m23 = f32x4.max(f32x4.abs(v2), f32x4.abs(v3));
      const m45 = f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), m67 = f32x4.max(f32x4.abs(v6), f32x4.abs(v7));
      let m = f32x4.max(f32x4.max(m01, m23), f32x4.max(m45, m67));
      m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
      const amax = max<f32>(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
      const d = amax / qmax;
      const id = select<f32>(<f32>1 / d, 0, d != 0);
      store<f32>(scales + ((<usize>i) << 2), d);
      const vid = f32x4.splat(id);
      const dst = quants + ((<usize>i) << 6);
      v128.store(dst, i16x8.narrow_i32x4_s(toInt(v0, vid), toInt(v1, vid)));
      v128.store(dst, i16x8.narrow_i32x4_s(toInt(v2, vid), toInt(v3, vid)), 16);
      v128.store(dst, i16x8.narrow_i32x4_s(toInt(v4, vid), toInt(v5, vid)), 32);
      v128.store(dst, i16x8.narrow_i32x4_s(toInt(v6, vid), toInt(v7, vid)), 48);
    }
  }
}

// @ts-ignore: decorator
@inline function toInt(v: v128, inverseScale: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v, inverseScale)));
}

/** (a) for either block format; `q4` is a constant at each call, so each export keeps one branch. */
// @ts-ignore: decorator
@inline function matmulQuantized(w: usize, out: i32, k: i32, scales: usize, quants: usize, n: i32, y: usize, q4: bool): void {
  const blocks = k >> 5;
  const blockBytes: usize = q4 ? 18 : 34;
  const rowBytes = <usize>blocks * blockBytes;
  const scaleRow = <usize>blocks << 2; // bytes between activation rows: scales,
  const quantRow = <usize>k << 1; // quants,
  const yRow = <usize>out << 2; // and outputs
  const n4 = n & ~3;

  // Prefill: four activation rows per loaded weight block.
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    for (let r = 0; r < n4; r += 4) {
      const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < blocks; b++) {
        const p = wRow + <usize>b * blockBytes;
        const lo = weightsLow(p, q4), hi = weightsHigh(p, q4);
        const dw = halfToFloat(load<u16>(p));
        const s = sc + (<usize>b << 2), qb = q + (<usize>b << 6);
        a0 = scaledAdd(a0, blockDotAt(lo, hi, qb), dw * load<f32>(s));
        a1 = scaledAdd(a1, blockDotAt(lo, hi, qb + quantRow), dw * load<f32>(s + scaleRow));
        a2 = scaledAdd(a2, blockDotAt(lo, hi, qb + 2 * quantRow), dw * load<f32>(s + 2 * scaleRow));
        a3 = scaledAdd(a3, blockDotAt(lo, hi, qb + 3 * quantRow), dw * load<f32>(s + 3 * scaleRow));
      }
      const yp = y + <usize>r * yRow + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0));
      store<f32>(yp + yRow, horizontalSum(a1));
      store<f32>(yp + 2 * yRow, horizontalSum(a2));
      store<f32>(yp + 3 * yRow, horizontalSum(a3));
    }
  }

  // The other rows (every row when decoding): four weight rows per loaded activation block, one
  // from each quarter of W, so that four long sequential weight streams are in flight (the
  // hardware prefetchers follow them; four neighbouring short rows read 1.6× slower from memory).
  const quarter = out >> 2;
  const streamBytes = <usize>quarter * rowBytes;
  const yStream = <usize>quarter << 2;
  for (let r = n4; r < n; r++) {
    const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow, yr = y + <usize>r * yRow;
    for (let o = 0; o < quarter; o++) {
      const wRow = w + <usize>o * rowBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < blocks; b++) {
        const qb = q + (<usize>b << 6);
        const x0 = v128.load(qb), x1 = v128.load(qb, 16), x2 = v128.load(qb, 32), x3 = v128.load(qb, 48);
        const p = wRow + <usize>b * blockBytes;
        const s = f32x4.mul(fourHalves(p, streamBytes), v128.load32_splat(sc + (<usize>b << 2)));
        a0 = splatScaledAdd(a0, blockDot(weightsLow(p, q4), weightsHigh(p, q4), x0, x1, x2, x3), i32x4.shuffle(s, s, 0, 0, 0, 0));
        const p1 = p + streamBytes;
        a1 = splatScaledAdd(a1, blockDot(weightsLow(p1, q4), weightsHigh(p1, q4), x0, x1, x2, x3), i32x4.shuffle(s, s, 1, 1, 1, 1));
        const p2 = p1 + streamBytes;
        a2 = splatScaledAdd(a2, blockDot(weightsLow(p2, q4), weightsHigh(p2, q4), x0, x1, x2, x3), i32x4.shuffle(s, s, 2, 2, 2, 2));
        const p3 = p2 + streamBytes;
        a3 = splatScaledAdd(a3, blockDot(weightsLow(p3, q4), weightsHigh(p3, q4), x0, x1, x2, x3), i32x4.shuffle(s, s, 3, 3, 3, 3));
      }
      const yp = yr + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0));
      store<f32>(yp + yStream, horizontalSum(a1));
      store<f32>(yp + 2 * yStream, horizontalSum(a2));
      store<f32>(yp + 3 * yStream, horizontalSum(a3));
    }
    for (let o = quarter << 2; o < out; o++) {
      const wRow = w + <usize>o * rowBytes;
      let acc = f32x4.splat(0);
      for (let b = 0; b < blocks; b++) {
        const p = wRow + <usize>b * blockBytes;
        const isum = blockDotAt(weightsLow(p, q4), weightsHigh(p, q4), q + (<usize>b << 6));
        acc = scaledAdd(acc, isum, halfToFloat(load<u16>(p)) * load<f32>(sc + (<usize>b << 2)));
      }
      store<f32>(yr + (<usize>o << 2), horizontalSum(acc));
    }
  }
}

/** q8_0 weights: 34-byte blocks [f16 d][32 × int8]. */
export function matmul_q8_0(w: usize, out: i32, k: i32, scales: usize, quants: usize, n: i32, y: usize): void {
  matmulQuantized(w, out, k, scales, quants, n, y, false);
}

/** q4_0 weights: 18-byte blocks [f16 d][16 bytes: low nibble = weight j, high = weight j + 16]. */
export function matmul_q4_0(w: usize, out: i32, k: i32, scales: usize, quants: usize, n: i32, y: usize): void {
  matmulQuantized(w, out, k, scales, quants, n, y, true);
}

// ---------------------------------------------------------------------------------------------
// (b) weights widened to f32 (measured against (a); kept so the benchmark can repeat the choice)

/** Σ_j f_j · x[j] over one block's eight f32x4 weights, as a tree so the adds do not form one chain. */
// @ts-ignore: decorator
@inline function blockDotF32(
  f0: v128, f1: v128, f2: v128, f3: v128, f4: v128, f5: v128, f6: v128, f7: v128, x: usize,
): v128 {
  const s01 = f32x4.add(f32x4.mul(f0, v128.load(x)), f32x4.mul(f1, v128.load(x, 16)));
  const s23 = f32x4.add(f32x4.mul(f2, v128.load(x, 32)), f32x4.mul(f3, v128.load(x, 48)));
  const s45 = f32x4.add(f32x4.mul(f4, v128.load(x, 64)), f32x4.mul(f5, v128.load(x, 80)));
  const s67 = f32x4.add(f32x4.mul(f6, v128.load(x, 96)), f32x4.mul(f7, v128.load(x, 112)));
  return f32x4.add(f32x4.add(s01, s23), f32x4.add(s45, s67));
}

// @ts-ignore: decorator
@inline function lowToF32(i16s: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16s));
}
// @ts-ignore: decorator
@inline function highToF32(i16s: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(i16s));
}

/** One row group of (b): `lo`/`hi` are the block's weights 0–15 and 16–31 as int8. */
// @ts-ignore: decorator
@inline function widenedRows(
  wRow: usize, blockBytes: usize, blocks: i32, q4: bool, x: usize, xRow: usize, rows: i32, y: usize, yRow: usize,
): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const p = wRow + <usize>b * blockBytes;
    let lo: v128, hi: v128;
    if (q4) {
      const packed = v128.load(p, 2);
      lo = q4Low(packed);
      hi = q4High(packed);
    } else {
      lo = v128.load(p, 2);
      hi = v128.load(p, 18);
    }
    const l0 = i16x8.extend_low_i8x16_s(lo), l1 = i16x8.extend_high_i8x16_s(lo);
    const h0 = i16x8.extend_low_i8x16_s(hi), h1 = i16x8.extend_high_i8x16_s(hi);
    const f0 = lowToF32(l0), f1 = highToF32(l0), f2 = lowToF32(l1), f3 = highToF32(l1);
    const f4 = lowToF32(h0), f5 = highToF32(h0), f6 = lowToF32(h1), f7 = highToF32(h1);
    const vd = f32x4.splat(halfToFloat(load<u16>(p)));
    const xb = x + (<usize>b << 7);
    a0 = f32x4.add(a0, f32x4.mul(blockDotF32(f0, f1, f2, f3, f4, f5, f6, f7, xb), vd));
    if (rows == 4) {
      a1 = f32x4.add(a1, f32x4.mul(blockDotF32(f0, f1, f2, f3, f4, f5, f6, f7, xb + xRow), vd));
      a2 = f32x4.add(a2, f32x4.mul(blockDotF32(f0, f1, f2, f3, f4, f5, f6, f7, xb + 2 * xRow), vd));
      a3 = f32x4.add(a3, f32x4.mul(blockDotF32(f0, f1, f2, f3, f4, f5, f6, f7, xb + 3 * xRow), vd));
    }
  }
  store<f32>(y, horizontalSum(a0));
  if (rows == 4) {
    store<f32>(y + yRow, horizontalSum(a1));
    store<f32>(y + 2 * yRow, horizontalSum(a2));
    store<f32>(y + 3 * yRow, horizontalSum(a3));
  }
}

// @ts-ignore: decorator
@inline function matmulWidened(w: usize, out: i32, k: i32, x: usize, n: i32, y: usize, q4: bool): void {
  const blocks = k >> 5;
  const blockBytes: usize = q4 ? 18 : 34;
  const rowBytes = <usize>blocks * blockBytes;
  const xRow = <usize>k << 2;
  const yRow = <usize>out << 2;
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    let r = 0;
    for (; r + 4 <= n; r += 4) widenedRows(wRow, blockBytes, blocks, q4, x + <usize>r * xRow, xRow, 4, y + <usize>r * yRow + (<usize>o << 2), yRow);
    for (; r < n; r++) widenedRows(wRow, blockBytes, blocks, q4, x + <usize>r * xRow, xRow, 1, y + <usize>r * yRow + (<usize>o << 2), yRow);
  }
}

/** (b) for q8_0: float32 activations x [n, k]. */
export function matmul_q8_0_f32(w: usize, out: i32, k: i32, x: usize, n: i32, y: usize): void {
  matmulWidened(w, out, k, x, n, y, false);
}

/** (b) for q4_0: float32 activations x [n, k]. */
export function matmul_q4_0_f32(w: usize, out: i32, k: i32, x: usize, n: i32, y: usize): void {
  matmulWidened(w, out, k, x, n, y, true);
}

// ---------------------------------------------------------------------------------------------
// bf16: the upper halves of float32, widened by placing them above sixteen zero bits

// @ts-ignore: decorator
@inline function bf16Low(v: v128): v128 {
  return i16x8.shuffle(i16x8.splat(0), v, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function bf16High(v: v128): v128 {
  return i16x8.shuffle(i16x8.splat(0), v, 4, 12, 5, 13, 6, 14, 7, 15);
}

// @ts-ignore: decorator
@inline function bf16Scalar(p: usize): f32 {
  return reinterpret<f32>((<u32>load<u16>(p)) << 16);
}

/** Σ_j w[j]·x[j] of one bf16 row over weights j8 ≤ j < k (the scalar tail after the vectors). */
// @ts-ignore: decorator
@inline function bf16Tail(wRow: usize, xr: usize, j8: i32, k: i32): f32 {
  let s: f32 = 0;
  for (let j = j8; j < k; j++) s += bf16Scalar(wRow + (<usize>j << 1)) * load<f32>(xr + (<usize>j << 2));
  return s;
}

/** acc + wl·xl + wh·xh: eight weights, widened (wl, wh), against eight activations. */
// @ts-ignore: decorator
@inline function widenedStep(acc: v128, wl: v128, wh: v128, xl: v128, xh: v128): v128 {
  return f32x4.add(acc, f32x4.add(f32x4.mul(wl, xl), f32x4.mul(wh, xh)));
}

/** widenedStep for eight bf16 weights v. */
// @ts-ignore: decorator
@inline function bf16Step(acc: v128, v: v128, xl: v128, xh: v128): v128 {
  return widenedStep(acc, bf16Low(v), bf16High(v), xl, xh);
}

/** bf16 weights [out, k] (any k ≥ 1), float32 activations x [n, k]. */
export function matmul_bf16(w: usize, out: i32, k: i32, x: usize, n: i32, y: usize): void {
  const rowBytes = <usize>k << 1;
  const xRow = <usize>k << 2;
  const yRow = <usize>out << 2;
  const k8 = k & ~7;
  const n4 = n & ~3;

  // Prefill: four activation rows per loaded weight vector.
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    for (let r = 0; r < n4; r += 4) {
      const x0 = x + <usize>r * xRow, x1 = x0 + xRow, x2 = x1 + xRow, x3 = x2 + xRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let j = 0; j < k8; j += 8) {
        const v = v128.load(wRow + (<usize>j << 1));
        const wl = bf16Low(v), wh = bf16High(v);
        const off = <usize>j << 2;
        a0 = widenedStep(a0, wl, wh, v128.load(x0 + off), v128.load(x0 + off, 16));
        a1 = widenedStep(a1, wl, wh, v128.load(x1 + off), v128.load(x1 + off, 16));
        a2 = widenedStep(a2, wl, wh, v128.load(x2 + off), v128.load(x2 + off, 16));
        a3 = widenedStep(a3, wl, wh, v128.load(x3 + off), v128.load(x3 + off, 16));
      }
      const yp = y + <usize>r * yRow + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0) + bf16Tail(wRow, x0, k8, k));
      store<f32>(yp + yRow, horizontalSum(a1) + bf16Tail(wRow, x1, k8, k));
      store<f32>(yp + 2 * yRow, horizontalSum(a2) + bf16Tail(wRow, x2, k8, k));
      store<f32>(yp + 3 * yRow, horizontalSum(a3) + bf16Tail(wRow, x3, k8, k));
    }
  }

  // The other rows (every row when decoding): four weight rows per loaded activation vector, one
  // from each quarter of W, so four long sequential weight streams are in flight.
  const quarter = out >> 2;
  const streamBytes = <usize>quarter * rowBytes;
  const yStream = <usize>quarter << 2;
  for (let r = n4; r < n; r++) {
    const xr = x + <usize>r * xRow, yr = y + <usize>r * yRow;
    for (let o = 0; o < quarter; o++) {
      const w0 = w + <usize>o * rowBytes, w1 = w0 + streamBytes, w2 = w1 + streamBytes, w3 = w2 + streamBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let j = 0; j < k8; j += 8) {
        const xp = xr + (<usize>j << 2), wj = <usize>j << 1;
        const xl = v128.load(xp), xh = v128.load(xp, 16);
        a0 = bf16Step(a0, v128.load(w0 + wj), xl, xh);
        a1 = bf16Step(a1, v128.load(w1 + wj), xl, xh);
        a2 = bf16Step(a2, v128.load(w2 + wj), xl, xh);
        a3 = bf16Step(a3, v128.load(w3 + wj), xl, xh);
      }
      const yp = yr + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0) + bf16Tail(w0, xr, k8, k));
      store<f32>(yp + yStream, horizontalSum(a1) + bf16Tail(w1, xr, k8, k));
      store<f32>(yp + 2 * yStream, horizontalSum(a2) + bf16Tail(w2, xr, k8, k));
      store<f32>(yp + 3 * yStream, horizontalSum(a3) + bf16Tail(w3, xr, k8, k));
    }
    for (let o = quarter << 2; o < out; o++) {
      const wRow = w + <usize>o * rowBytes;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      let j = 0;
      for (; j + 16 <= k8; j += 16) {
        const wp = wRow + (<usize>j << 1), xp = xr + (<usize>j << 2);
        a0 = bf16Step(a0, v128.load(wp), v128.load(xp), v128.load(xp, 16));
        a1 = bf16Step(a1, v128.load(wp, 16), v128.load(xp, 32), v128.load(xp, 48));
      }
      for (; j < k8; j += 8) a0 = bf16Step(a0, v128.load(wRow + (<usize>j << 1)), v128.load(xr + (<usize>j << 2)), v128.load(xr + (<usize>j << 2), 16));
      store<f32>(yr + (<usize>o << 2), horizontalSum(f32x4.add(a0, a1)) + bf16Tail(wRow, xr, k8, k));
    }
  }
}
