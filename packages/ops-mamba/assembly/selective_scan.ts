// The selective scan of one Mamba-2 head (AssemblyScript → WebAssembly SIMD128): the body of
// src/kernels/SelectiveScan.ts and SelectiveStateUpdate.ts on the wasm backend. The module imports
// its memory (the tfjs wasm backend's heap), so every pointer is a byte address into it and the
// tensors are read and written where they lie. Nothing here allocates.
//
// A tile of V f32x4 vectors of the state row S[p, n0 : n0 + 4V] stays in registers for the whole
// sequence, so per token and tile the work is 2V vector loads (B, C), V state updates, V products
// and one horizontal sum, with no state traffic to memory (the reason this beats a loop over p and
// n per token, which loads and stores the state every token). One exported function per tile
// width; the caller takes the widest that divides N.
//
// Arguments of every scan_v{V} (strides in bytes):
// - x, y: &x[b, 0, h, 0], &y[b, 0, h, 0]; successive tokens are xyStride apart
// - B, C: &B[b, 0, g, 0], &C[b, 0, g, 0]; successive tokens are bcStride apart
// - dt, decay: [T] contiguous, this head's dt_t and exp(dt_t·A)
// - stateIn / stateOut: this head's [P, N] (may be equal)
// - T ≥ 1 tokens, P head dim, N state size, Dh this head's D
// y accumulates: y[t, p] += Σ_n S_t[p, n]·C_t[n] per tile, plus Dh·x[t, p] from the first tile,
// so y must arrive zero-filled.

import { horizontalSum } from '../../../tools/build-wasm/assembly/simd';

/** S = exp(dt·A)·S + (dt·x)·B for one vector of the tile (B at bp + offset). */
// @ts-ignore: decorator
@inline function update(s: v128, decay: v128, dtx: v128, bp: usize, offset: usize): v128 {
  return f32x4.add(f32x4.mul(s, decay), f32x4.mul(dtx, v128.load(bp + offset)));
}

/** The scan of one head with a tile of 8 vectors (32 state columns) held in registers; N must be a multiple of 32. */
export function scan_v8(
  x: usize, y: usize, xyStride: usize, B: usize, C: usize, bcStride: usize,
  dt: usize, decay: usize, stateIn: usize, stateOut: usize, T: i32, P: i32, N: i32, Dh: f32,
): void {
  const tiles = N / 32;
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < tiles; j++) {
      const offset = (<usize>p * <usize>N + <usize>j * 32) << 2;
      const tileIn = stateIn + offset;
      const tileOut = stateOut + offset;
      let s0 = v128.load(tileIn, 0);
      let s1 = v128.load(tileIn, 16);
      let s2 = v128.load(tileIn, 32);
      let s3 = v128.load(tileIn, 48);
      let s4 = v128.load(tileIn, 64);
      let s5 = v128.load(tileIn, 80);
      let s6 = v128.load(tileIn, 96);
      let s7 = v128.load(tileIn, 112);
      // The D·x skip term is added once per (t, p), by the first tile.
      const dTerm: f32 = j == 0 ? Dh : 0;
      let xp = x + (<usize>p << 2);
      let yp = y + (<usize>p << 2);
      let bp = B + <usize>j * 128;
      let cp = C + <usize>j * 128;
      let dtp = dt;
      let decayp = decay;
      for (let t = 0; t < T; t++) {
        const xv = load<f32>(xp);
        const dtx = f32x4.splat(load<f32>(dtp) * xv);
        const decay = f32x4.splat(load<f32>(decayp));
        s0 = update(s0, decay, dtx, bp, 0);
        s1 = update(s1, decay, dtx, bp, 16);
        s2 = update(s2, decay, dtx, bp, 32);
        s3 = update(s3, decay, dtx, bp, 48);
        s4 = update(s4, decay, dtx, bp, 64);
        s5 = update(s5, decay, dtx, bp, 80);
        s6 = update(s6, decay, dtx, bp, 96);
        s7 = update(s7, decay, dtx, bp, 112);
        const c0 = f32x4.mul(s0, v128.load(cp, 0));
        const c1 = f32x4.mul(s1, v128.load(cp, 16));
        const c2 = f32x4.mul(s2, v128.load(cp, 32));
        const c3 = f32x4.mul(s3, v128.load(cp, 48));
        const c4 = f32x4.mul(s4, v128.load(cp, 64));
        const c5 = f32x4.mul(s5, v128.load(cp, 80));
        const c6 = f32x4.mul(s6, v128.load(cp, 96));
        const c7 = f32x4.mul(s7, v128.load(cp, 112));
        // A balanced tree, so the adds do not form one serial chain.
        const acc = f32x4.add(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)), f32x4.add(f32x4.add(c4, c5), f32x4.add(c6, c7)));
        store<f32>(yp, load<f32>(yp) + horizontalSum(acc) + dTerm * xv);
        xp += xyStride;
        yp += xyStride;
        bp += bcStride;
        cp += bcStride;
        dtp += 4;
        decayp += 4;
      }
      v128.store(tileOut, s0, 0);
      v128.store(tileOut, s1, 16);
      v128.store(tileOut, s2, 32);
      v128.store(tileOut, s3, 48);
      v128.store(tileOut, s4, 64);
      v128.store(tileOut, s5, 80);
      v128.store(tileOut, s6, 96);
      v128.store(tileOut, s7, 112);
    }
  }
}

/** The scan of one head with a tile of 4 vectors (16 state columns) held in registers; N must be a multiple of 16. */
export function scan_v4(
  x: usize, y: usize, xyStride: usize, B: usize, C: usize, bcStride: usize,
  dt: usize, decay: usize, stateIn: usize, stateOut: usize, T: i32, P: i32, N: i32, Dh: f32,
): void {
  const tiles = N / 16;
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < tiles; j++) {
      const offset = (<usize>p * <usize>N + <usize>j * 16) << 2;
      const tileIn = stateIn + offset;
      const tileOut = stateOut + offset;
      let s0 = v128.load(tileIn, 0);
      let s1 = v128.load(tileIn, 16);
      let s2 = v128.load(tileIn, 32);
      let s3 = v128.load(tileIn, 48);
      // The D·x skip term is added once per (t, p), by the first tile.
      const dTerm: f32 = j == 0 ? Dh : 0;
      let xp = x + (<usize>p << 2);
      let yp = y + (<usize>p << 2);
      let bp = B + <usize>j * 64;
      let cp = C + <usize>j * 64;
      let dtp = dt;
      let decayp = decay;
      for (let t = 0; t < T; t++) {
        const xv = load<f32>(xp);
        const dtx = f32x4.splat(load<f32>(dtp) * xv);
        const decay = f32x4.splat(load<f32>(decayp));
        s0 = update(s0, decay, dtx, bp, 0);
        s1 = update(s1, decay, dtx, bp, 16);
        s2 = update(s2, decay, dtx, bp, 32);
        s3 = update(s3, decay, dtx, bp, 48);
        const c0 = f32x4.mul(s0, v128.load(cp, 0));
        const c1 = f32x4.mul(s1, v128.load(cp, 16));
        const c2 = f32x4.mul(s2, v128.load(cp, 32));
        const c3 = f32x4.mul(s3, v128.load(cp, 48));
        // A balanced tree, so the adds do not form one serial chain.
        const acc = f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3));
        store<f32>(yp, load<f32>(yp) + horizontalSum(acc) + dTerm * xv);
        xp += xyStride;
        yp += xyStride;
        bp += bcStride;
        cp += bcStride;
        dtp += 4;
        decayp += 4;
      }
      v128.store(tileOut, s0, 0);
      v128.store(tileOut, s1, 16);
      v128.store(tileOut, s2, 32);
      v128.store(tileOut, s3, 48);
    }
  }
}

/** The scan of one head with a tile of 2 vectors (8 state columns) held in registers; N must be a multiple of 8. */
export function scan_v2(
  x: usize, y: usize, xyStride: usize, B: usize, C: usize, bcStride: usize,
  dt: usize, decay: usize, stateIn: usize, stateOut: usize, T: i32, P: i32, N: i32, Dh: f32,
): void {
  const tiles = N / 8;
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < tiles; j++) {
      const offset = (<usize>p * <usize>N + <usize>j * 8) << 2;
      const tileIn = stateIn + offset;
      const tileOut = stateOut + offset;
      let s0 = v128.load(tileIn, 0);
      let s1 = v128.load(tileIn, 16);
      // The D·x skip term is added once per (t, p), by the first tile.
      const dTerm: f32 = j == 0 ? Dh : 0;
      let xp = x + (<usize>p << 2);
      let yp = y + (<usize>p << 2);
      let bp = B + <usize>j * 32;
      let cp = C + <usize>j * 32;
      let dtp = dt;
      let decayp = decay;
      for (let t = 0; t < T; t++) {
        const xv = load<f32>(xp);
        const dtx = f32x4.splat(load<f32>(dtp) * xv);
        const decay = f32x4.splat(load<f32>(decayp));
        s0 = update(s0, decay, dtx, bp, 0);
        s1 = update(s1, decay, dtx, bp, 16);
        const c0 = f32x4.mul(s0, v128.load(cp, 0));
        const c1 = f32x4.mul(s1, v128.load(cp, 16));
        // A balanced tree, so the adds do not form one serial chain.
        const acc = f32x4.add(c0, c1);
        store<f32>(yp, load<f32>(yp) + horizontalSum(acc) + dTerm * xv);
        xp += xyStride;
        yp += xyStride;
        bp += bcStride;
        cp += bcStride;
        dtp += 4;
        decayp += 4;
      }
      v128.store(tileOut, s0, 0);
      v128.store(tileOut, s1, 16);
    }
  }
}

/** The scan of one head with a tile of 1 vector (4 state columns) held in registers; N must be a multiple of 4. */
export function scan_v1(
  x: usize, y: usize, xyStride: usize, B: usize, C: usize, bcStride: usize,
  dt: usize, decay: usize, stateIn: usize, stateOut: usize, T: i32, P: i32, N: i32, Dh: f32,
): void {
  const tiles = N / 4;
  for (let p = 0; p < P; p++) {
    for (let j = 0; j < tiles; j++) {
      const offset = (<usize>p * <usize>N + <usize>j * 4) << 2;
      const tileIn = stateIn + offset;
      const tileOut = stateOut + offset;
      let s0 = v128.load(tileIn, 0);
      // The D·x skip term is added once per (t, p), by the first tile.
      const dTerm: f32 = j == 0 ? Dh : 0;
      let xp = x + (<usize>p << 2);
      let yp = y + (<usize>p << 2);
      let bp = B + <usize>j * 16;
      let cp = C + <usize>j * 16;
      let dtp = dt;
      let decayp = decay;
      for (let t = 0; t < T; t++) {
        const xv = load<f32>(xp);
        const dtx = f32x4.splat(load<f32>(dtp) * xv);
        const decay = f32x4.splat(load<f32>(decayp));
        s0 = update(s0, decay, dtx, bp, 0);
        const acc = f32x4.mul(s0, v128.load(cp, 0));
        store<f32>(yp, load<f32>(yp) + horizontalSum(acc) + dTerm * xv);
        xp += xyStride;
        yp += xyStride;
        bp += bcStride;
        cp += bcStride;
        dtp += 4;
        decayp += 4;
      }
      v128.store(tileOut, s0, 0);
    }
  }
}
