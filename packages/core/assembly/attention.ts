// Softmax attention by an online softmax (AssemblyScript → WebAssembly SIMD128): the body of
// src/nn/attention_kernel.ts on the wasm backend. The module imports its memory (the tfjs wasm
// backend's heap), so every pointer is a byte address into it: q, k, v and the key mask are read
// where their tensors lie, out is written into the output tensor. Nothing here allocates; the
// caller gives `acc`, head_dim floats of scratch.
//
// Per query row the keys go by in groups of 4: their 4 scores (dot products 4 dimensions at a
// time) sit in one f32x4, one vector exp gives their 4 weights, and the running maximum m, sum l
// and output (acc) are rescaled by exp(m_old − m_new) once per group when the group raises m.
// The JavaScript body takes one key at a time; results differ by float rounding only.

import { horizontalSum } from '../../../tools/build-wasm/assembly/simd';

/** exp(x) for x ≤ 0 within a few ulp: x = n·ln2 + r, a degree-6 polynomial for exp(r), times 2^n;
 * below −87 (where exp(x) < 2^−125) the result is flushed to 0, as the masked lanes need. */
// @ts-ignore: decorator
@inline function expNonPositive(x: v128): v128 {
  const tiny = f32x4.lt(x, f32x4.splat(-87.0));
  const clamped = f32x4.max(x, f32x4.splat(-87.0));
  const n = f32x4.nearest(f32x4.mul(clamped, f32x4.splat(1.442695041)));
  let r = f32x4.sub(clamped, f32x4.mul(n, f32x4.splat(0.693145751953125)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(1.428606765e-6)));
  let p = f32x4.splat(1.381457318e-3);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.368703537e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.166838899e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.666652113e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.999999404e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0));
  // × 2^n through the exponent bits (n ≥ −126 after the clamp, so the result stays normal).
  const scaled = i32x4.add(p, i32x4.shl(i32x4.trunc_sat_f32x4_s(n), 23));
  return v128.andnot(scaled, tiny);
}

// @ts-ignore: decorator
@inline function dot(a: usize, b: usize, hd: i32): f32 {
  let sum = f32x4.splat(0);
  for (let d = 0; d < hd; d += 4) sum = f32x4.add(sum, f32x4.mul(v128.load(a + (<usize>d << 2)), v128.load(b + (<usize>d << 2))));
  return horizontalSum(sum);
}

/** scale · q·k_s, or −∞ when key s is masked or at / past `end`. */
// @ts-ignore: decorator
@inline function scoreAt(qRow: usize, keys: usize, posStride: usize, hd: i32, s: i32, end: i32, maskRow: usize, scale: f32): f32 {
  if (s >= end || (maskRow != 0 && load<f32>(maskRow + (<usize>s << 2)) == 0)) return -Infinity;
  return dot(qRow, keys + <usize>s * posStride, hd) * scale;
}

/**
 * out[b, t, j] = Σ_s softmax_s(scale · q[b, t, j]·k_s) v_s over the allowed keys s < keyLength of
 * KV head j / (heads / kvHeads): key s is allowed where mask[b, s] ≠ 0 (mask 0: no mask) and, when
 * causal, s ≤ keyLength − time + t. k and v are [batch, capacity, kvHeads, hd], or with
 * headsMajor [batch, kvHeads, capacity, hd]. hd must be a multiple of 4. A query that sees no key
 * gets zeros.
 */
export function attention(
  q: usize, k: usize, v: usize, mask: usize, out: usize, acc: usize,
  batch: i32, time: i32, heads: i32, kvHeads: i32, hd: i32, keyLength: i32, capacity: i32,
  causal: i32, headsMajor: i32, scale: f32,
): void {
  const rep = heads / kvHeads;
  const rowBytes = <usize>hd << 2;
  const posStride: usize = headsMajor ? rowBytes : <usize>kvHeads * rowBytes;
  const headStride: usize = headsMajor ? <usize>capacity * rowBytes : rowBytes;
  const sequenceStride: usize = <usize>capacity * <usize>kvHeads * rowBytes;
  for (let b = 0; b < batch; b++) {
    const maskRow: usize = mask ? mask + (<usize>(b * keyLength) << 2) : 0;
    for (let t = 0; t < time; t++) {
      const end = causal ? keyLength - time + t + 1 : keyLength;
      for (let j = 0; j < heads; j++) {
        const qRow = q + <usize>((b * time + t) * heads + j) * rowBytes;
        const kvBase: usize = <usize>b * sequenceStride + <usize>(j / rep) * headStride;
        let m: f32 = -Infinity;
        let l: f32 = 0;
        for (let d = 0; d < hd; d += 4) v128.store(acc + (<usize>d << 2), f32x4.splat(0));
        for (let s0 = 0; s0 < end; s0 += 4) {
          // The group's scores, −∞ where a key is masked or past the end.
          let scores = f32x4.splat(scoreAt(qRow, k + kvBase, posStride, hd, s0, end, maskRow, scale));
          scores = f32x4.replace_lane(scores, 1, scoreAt(qRow, k + kvBase, posStride, hd, s0 + 1, end, maskRow, scale));
          scores = f32x4.replace_lane(scores, 2, scoreAt(qRow, k + kvBase, posStride, hd, s0 + 2, end, maskRow, scale));
          scores = f32x4.replace_lane(scores, 3, scoreAt(qRow, k + kvBase, posStride, hd, s0 + 3, end, maskRow, scale));
          const groupMax = max<f32>(max<f32>(f32x4.extract_lane(scores, 0), f32x4.extract_lane(scores, 1)), max<f32>(f32x4.extract_lane(scores, 2), f32x4.extract_lane(scores, 3)));
          if (groupMax == -Infinity) continue;
          const mNew = max<f32>(m, groupMax);
          const alpha = f32x4.extract_lane(expNonPositive(f32x4.splat(m - mNew)), 0);
          const p = expNonPositive(f32x4.sub(scores, f32x4.splat(mNew)));
          l = l * alpha + horizontalSum(p);
          m = mNew;
          const valpha = f32x4.splat(alpha);
          const p0 = f32x4.splat(f32x4.extract_lane(p, 0)), p1 = f32x4.splat(f32x4.extract_lane(p, 1));
          const p2 = f32x4.splat(f32x4.extract_lane(p, 2)), p3 = f32x4.splat(f32x4.extract_lane(p, 3));
          const v0 = v + kvBase + <usize>s0 * posStride;
          // Lanes past the end carry p = 0; their value rows are not read (a short last group).
          const n = min<i32>(4, end - s0);
          for (let d = 0; d < hd; d += 4) {
            const at = <usize>d << 2;
            let o = f32x4.mul(v128.load(acc + at), valpha);
            o = f32x4.add(o, f32x4.mul(p0, v128.load(v0 + at)));
            if (n > 1) o = f32x4.add(o, f32x4.mul(p1, v128.load(v0 + posStride + at)));
            if (n > 2) o = f32x4.add(o, f32x4.mul(p2, v128.load(v0 + 2 * posStride + at)));
            if (n > 3) o = f32x4.add(o, f32x4.mul(p3, v128.load(v0 + 3 * posStride + at)));
            v128.store(acc + at, o);
          }
        }
        const inv = f32x4.splat(l > 0 ? 1 / l : 0);
        const outRow = out + <usize>((b * time + t) * heads + j) * rowBytes;
        for (let d = 0; d < hd; d += 4) v128.store(outRow + (<usize>d << 2), f32x4.mul(v128.load(acc + (<usize>d << 2)), inv));
      }
    }
  }
}
