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
//       scales. About 21 SIMD instructions per block for one row, 15 for each further row of a
//       prefill group.
//   (b) `matmul_q8_0_f32` / `matmul_q4_0_f32`: the weights widened all the way to f32x4 and
//       multiplied with the float32 activations: 22 instructions to widen a block, then 25 per row.
// (a) is the one PackedMatMul runs: 1.5–2.1× faster than (b) at n = 1 and 1.4–1.8× at n = 64, at
// H-Micro's 8192×2048 and 2048×8192 (2026-12-01, one Xeon core, Node 20). With int16 activations
// (qmax 32767) rather than llama.cpp's int8 (127) the cost is the same, since the dot instruction
// takes i16 lanes either way, and the activation rounding error is 258× smaller.
//
// Activation rows are processed four at a time per loaded weight block (prefill), then one by one.

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

// @ts-ignore: decorator
@inline function horizontalSum(v: v128): f32 {
  const pairs = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(pairs, 0) + f32x4.extract_lane(pairs, 1);
}

/** Σ of the 32 products of one weight block (four i16x8) with 32 int16 activations at `q`, as i32x4. */
// @ts-ignore: decorator
@inline function blockDot(w0: v128, w1: v128, w2: v128, w3: v128, q: usize): v128 {
  const s01 = i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(q)), i32x4.dot_i16x8_s(w1, v128.load(q, 16)));
  const s23 = i32x4.add(i32x4.dot_i16x8_s(w2, v128.load(q, 32)), i32x4.dot_i16x8_s(w3, v128.load(q, 48)));
  return i32x4.add(s01, s23);
}

/** acc + isum · (dw · dx), the block's integer dot product scaled back to real units. */
// @ts-ignore: decorator
@inline function scaledAdd(acc: v128, isum: v128, scale: f32): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(scale)));
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
 * dw · dx for four consecutive blocks: the weight scales at p, p + stride, … decoded together (a
 * quarter of the scalar decoding's instructions, which dominate a one-row block otherwise), times
 * the four activation scales at `xs`.
 */
// @ts-ignore: decorator
@inline function fourScales(p: usize, stride: usize, xs: usize): v128 {
  let h = i32x4.splat(<i32>load<u16>(p));
  h = i32x4.replace_lane(h, 1, <i32>load<u16>(p + stride));
  h = i32x4.replace_lane(h, 2, <i32>load<u16>(p + 2 * stride));
  h = i32x4.replace_lane(h, 3, <i32>load<u16>(p + 3 * stride));
  return f32x4.mul(halvesToFloats(h), v128.load(xs));
}

/** scaledAdd with the scale already in every lane. */
// @ts-ignore: decorator
@inline function splatScaledAdd(acc: v128, isum: v128, scale: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
}

/** One q8_0 block at p against the int16 activations at q. */
// @ts-ignore: decorator
@inline function q8BlockDot(p: usize, q: usize): v128 {
  const lo = v128.load(p, 2), hi = v128.load(p, 18);
  return blockDot(
    i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo),
    i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi),
    q,
  );
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

/** q8_0 weights: 34-byte blocks [f16 d][32 × int8]. */
export function matmul_q8_0(w: usize, out: i32, k: i32, scales: usize, quants: usize, n: i32, y: usize): void {
  const blocks = k >> 5;
  const rowBytes = <usize>blocks * 34;
  const scaleRow = <usize>blocks << 2; // bytes between activation rows, scales
  const quantRow = <usize>k << 1; // and quants
  const yRow = <usize>out << 2;
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    let r = 0;
    for (; r + 4 <= n; r += 4) {
      const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < blocks; b++) {
        const p = wRow + <usize>b * 34;
        const dw = halfToFloat(load<u16>(p));
        const lo = v128.load(p, 2), hi = v128.load(p, 18);
        const w0 = i16x8.extend_low_i8x16_s(lo), w1 = i16x8.extend_high_i8x16_s(lo);
        const w2 = i16x8.extend_low_i8x16_s(hi), w3 = i16x8.extend_high_i8x16_s(hi);
        const s = sc + (<usize>b << 2), qb = q + (<usize>b << 6);
        a0 = scaledAdd(a0, blockDot(w0, w1, w2, w3, qb), dw * load<f32>(s));
        a1 = scaledAdd(a1, blockDot(w0, w1, w2, w3, qb + quantRow), dw * load<f32>(s + scaleRow));
        a2 = scaledAdd(a2, blockDot(w0, w1, w2, w3, qb + 2 * quantRow), dw * load<f32>(s + 2 * scaleRow));
        a3 = scaledAdd(a3, blockDot(w0, w1, w2, w3, qb + 3 * quantRow), dw * load<f32>(s + 3 * scaleRow));
      }
      const yp = y + <usize>r * yRow + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0));
      store<f32>(yp + yRow, horizontalSum(a1));
      store<f32>(yp + 2 * yRow, horizontalSum(a2));
      store<f32>(yp + 3 * yRow, horizontalSum(a3));
    }
    for (; r < n; r++) {
      const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow;
      let acc = f32x4.splat(0);
      let b = 0;
      for (; b + 4 <= blocks; b += 4) {
        const p = wRow + <usize>b * 34, qb = q + (<usize>b << 6);
        const s = fourScales(p, 34, sc + (<usize>b << 2));
        acc = splatScaledAdd(acc, q8BlockDot(p, qb), i32x4.shuffle(s, s, 0, 0, 0, 0));
        acc = splatScaledAdd(acc, q8BlockDot(p + 34, qb + 64), i32x4.shuffle(s, s, 1, 1, 1, 1));
        acc = splatScaledAdd(acc, q8BlockDot(p + 68, qb + 128), i32x4.shuffle(s, s, 2, 2, 2, 2));
        acc = splatScaledAdd(acc, q8BlockDot(p + 102, qb + 192), i32x4.shuffle(s, s, 3, 3, 3, 3));
      }
      for (; b < blocks; b++) {
        const p = wRow + <usize>b * 34;
        acc = scaledAdd(acc, q8BlockDot(p, q + (<usize>b << 6)), halfToFloat(load<u16>(p)) * load<f32>(sc + (<usize>b << 2)));
      }
      store<f32>(y + <usize>r * yRow + (<usize>o << 2), horizontalSum(acc));
    }
  }
}

/** The 32 weights of a q4_0 block's 16 nibble bytes as int8 minus 8: weights 0–15, then 16–31. */
// @ts-ignore: decorator
@inline function q4Low(v: v128): v128 {
  return i8x16.sub(v128.and(v, i8x16.splat(0x0f)), i8x16.splat(8));
}
// A 16-bit shift then the mask: WebAssembly's i8x16.shr_u has no x86 instruction and is emulated
// by exactly these two.
// @ts-ignore: decorator
@inline function q4High(v: v128): v128 {
  return i8x16.sub(v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)), i8x16.splat(8));
}

/** One q4_0 block at p against the int16 activations at q. */
// @ts-ignore: decorator
@inline function q4BlockDot(p: usize, q: usize): v128 {
  const packed = v128.load(p, 2);
  const lo = q4Low(packed), hi = q4High(packed);
  return blockDot(
    i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo),
    i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi),
    q,
  );
}

/** q4_0 weights: 18-byte blocks [f16 d][16 bytes: low nibble = weight j, high = weight j + 16]. */
export function matmul_q4_0(w: usize, out: i32, k: i32, scales: usize, quants: usize, n: i32, y: usize): void {
  const blocks = k >> 5;
  const rowBytes = <usize>blocks * 18;
  const scaleRow = <usize>blocks << 2;
  const quantRow = <usize>k << 1;
  const yRow = <usize>out << 2;
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    let r = 0;
    for (; r + 4 <= n; r += 4) {
      const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      for (let b = 0; b < blocks; b++) {
        const p = wRow + <usize>b * 18;
        const dw = halfToFloat(load<u16>(p));
        const packed = v128.load(p, 2);
        const lo = q4Low(packed), hi = q4High(packed);
        const w0 = i16x8.extend_low_i8x16_s(lo), w1 = i16x8.extend_high_i8x16_s(lo);
        const w2 = i16x8.extend_low_i8x16_s(hi), w3 = i16x8.extend_high_i8x16_s(hi);
        const s = sc + (<usize>b << 2), qb = q + (<usize>b << 6);
        a0 = scaledAdd(a0, blockDot(w0, w1, w2, w3, qb), dw * load<f32>(s));
        a1 = scaledAdd(a1, blockDot(w0, w1, w2, w3, qb + quantRow), dw * load<f32>(s + scaleRow));
        a2 = scaledAdd(a2, blockDot(w0, w1, w2, w3, qb + 2 * quantRow), dw * load<f32>(s + 2 * scaleRow));
        a3 = scaledAdd(a3, blockDot(w0, w1, w2, w3, qb + 3 * quantRow), dw * load<f32>(s + 3 * scaleRow));
      }
      const yp = y + <usize>r * yRow + (<usize>o << 2);
      store<f32>(yp, horizontalSum(a0));
      store<f32>(yp + yRow, horizontalSum(a1));
      store<f32>(yp + 2 * yRow, horizontalSum(a2));
      store<f32>(yp + 3 * yRow, horizontalSum(a3));
    }
    for (; r < n; r++) {
      const sc = scales + <usize>r * scaleRow, q = quants + <usize>r * quantRow;
      let acc = f32x4.splat(0);
      let b = 0;
      for (; b + 4 <= blocks; b += 4) {
        const p = wRow + <usize>b * 18, qb = q + (<usize>b << 6);
        const s = fourScales(p, 18, sc + (<usize>b << 2));
        acc = splatScaledAdd(acc, q4BlockDot(p, qb), i32x4.shuffle(s, s, 0, 0, 0, 0));
        acc = splatScaledAdd(acc, q4BlockDot(p + 18, qb + 64), i32x4.shuffle(s, s, 1, 1, 1, 1));
        acc = splatScaledAdd(acc, q4BlockDot(p + 36, qb + 128), i32x4.shuffle(s, s, 2, 2, 2, 2));
        acc = splatScaledAdd(acc, q4BlockDot(p + 54, qb + 192), i32x4.shuffle(s, s, 3, 3, 3, 3));
      }
      for (; b < blocks; b++) {
        const p = wRow + <usize>b * 18;
        acc = scaledAdd(acc, q4BlockDot(p, q + (<usize>b << 6)), halfToFloat(load<u16>(p)) * load<f32>(sc + (<usize>b << 2)));
      }
      store<f32>(y + <usize>r * yRow + (<usize>o << 2), horizontalSum(acc));
    }
  }
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

/** bf16 weights [out, k] (any k ≥ 1), float32 activations x [n, k]. */
export function matmul_bf16(w: usize, out: i32, k: i32, x: usize, n: i32, y: usize): void {
  const rowBytes = <usize>k << 1;
  const xRow = <usize>k << 2;
  const yRow = <usize>out << 2;
  const k32 = k & ~31, k8 = k & ~7;
  for (let o = 0; o < out; o++) {
    const wRow = w + <usize>o * rowBytes;
    let r = 0;
    for (; r + 4 <= n; r += 4) {
      const x0 = x + <usize>r * xRow, x1 = x0 + xRow, x2 = x1 + xRow, x3 = x2 + xRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let j = 0;
      for (; j < k8; j += 8) {
        const v = v128.load(wRow + (<usize>j << 1));
        const wl = bf16Low(v), wh = bf16High(v);
        const off = <usize>j << 2;
        a0 = f32x4.add(a0, f32x4.add(f32x4.mul(wl, v128.load(x0 + off)), f32x4.mul(wh, v128.load(x0 + off, 16))));
        a1 = f32x4.add(a1, f32x4.add(f32x4.mul(wl, v128.load(x1 + off)), f32x4.mul(wh, v128.load(x1 + off, 16))));
        a2 = f32x4.add(a2, f32x4.add(f32x4.mul(wl, v128.load(x2 + off)), f32x4.mul(wh, v128.load(x2 + off, 16))));
        a3 = f32x4.add(a3, f32x4.add(f32x4.mul(wl, v128.load(x3 + off)), f32x4.mul(wh, v128.load(x3 + off, 16))));
      }
      let s0 = horizontalSum(a0), s1 = horizontalSum(a1), s2 = horizontalSum(a2), s3 = horizontalSum(a3);
      for (; j < k; j++) {
        const wj = bf16Scalar(wRow + (<usize>j << 1));
        const off = <usize>j << 2;
        s0 += wj * load<f32>(x0 + off);
        s1 += wj * load<f32>(x1 + off);
        s2 += wj * load<f32>(x2 + off);
        s3 += wj * load<f32>(x3 + off);
      }
      const yp = y + <usize>r * yRow + (<usize>o << 2);
      store<f32>(yp, s0);
      store<f32>(yp + yRow, s1);
      store<f32>(yp + 2 * yRow, s2);
      store<f32>(yp + 3 * yRow, s3);
    }
    for (; r < n; r++) {
      const xr = x + <usize>r * xRow;
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let j = 0;
      for (; j < k32; j += 32) {
        const wp = wRow + (<usize>j << 1), xp = xr + (<usize>j << 2);
        const v0 = v128.load(wp), v1 = v128.load(wp, 16), v2 = v128.load(wp, 32), v3 = v128.load(wp, 48);
        a0 = f32x4.add(a0, f32x4.add(f32x4.mul(bf16Low(v0), v128.load(xp)), f32x4.mul(bf16High(v0), v128.load(xp, 16))));
        a1 = f32x4.add(a1, f32x4.add(f32x4.mul(bf16Low(v1), v128.load(xp, 32)), f32x4.mul(bf16High(v1), v128.load(xp, 48))));
        a2 = f32x4.add(a2, f32x4.add(f32x4.mul(bf16Low(v2), v128.load(xp, 64)), f32x4.mul(bf16High(v2), v128.load(xp, 80))));
        a3 = f32x4.add(a3, f32x4.add(f32x4.mul(bf16Low(v3), v128.load(xp, 96)), f32x4.mul(bf16High(v3), v128.load(xp, 112))));
      }
      for (; j < k8; j += 8) {
        const v = v128.load(wRow + (<usize>j << 1));
        const xp = xr + (<usize>j << 2);
        a0 = f32x4.add(a0, f32x4.add(f32x4.mul(bf16Low(v), v128.load(xp)), f32x4.mul(bf16High(v), v128.load(xp, 16))));
      }
      let s = horizontalSum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
      for (; j < k; j++) s += bf16Scalar(wRow + (<usize>j << 1)) * load<f32>(xr + (<usize>j << 2));
      store<f32>(y + <usize>r * yRow + (<usize>o << 2), s);
    }
  }
}
