// Float32 matrix-vector products on the tfjs wasm heap (AssemblyScript → WebAssembly SIMD128): the
// body of the fused expert kernel (src/kernels/MoeExpertsGemv.ts) on the wasm backend. The module
// imports its memory, so every pointer is a byte address into it and the selected experts' weights
// are read where their tensors lie, never copied. Nothing here allocates.

import { horizontalSum } from '../../../tools/build-wasm/assembly/simd';

/**
 * y[r] = alpha · Σ_c W[r, c] · x[c] + beta · y[r] for r < rows, W row-major [rows, cols]. Sixteen
 * columns a step in four independent accumulators (so the adds do not form one serial chain),
 * then the remaining columns one at a time.
 */
export function gemv(w: usize, x: usize, y: usize, rows: i32, cols: i32, alpha: f32, beta: f32): void {
  for (let r = 0; r < rows; r++) {
    const row = w + <usize>r * <usize>cols * 4;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let c = 0;
    for (; c + 16 <= cols; c += 16) {
      const wc = row + (<usize>c << 2);
      const xc = x + (<usize>c << 2);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(wc), v128.load(xc)));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(wc, 16), v128.load(xc, 16)));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(wc, 32), v128.load(xc, 32)));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(wc, 48), v128.load(xc, 48)));
    }
    let s = horizontalSum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
    for (; c < cols; c++) s += load<f32>(row + (<usize>c << 2)) * load<f32>(x + (<usize>c << 2));
    const yr = y + (<usize>r << 2);
    store<f32>(yr, alpha * s + beta * load<f32>(yr));
  }
}

/** Σ of `n` float32 from byte address `ptr`: a read at memory speed, the benchmark's floor. */
export function sum(ptr: usize, n: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let c = 0;
  for (; c + 16 <= n; c += 16) {
    const p = ptr + (<usize>c << 2);
    a0 = f32x4.add(a0, v128.load(p));
    a1 = f32x4.add(a1, v128.load(p, 16));
    a2 = f32x4.add(a2, v128.load(p, 32));
    a3 = f32x4.add(a3, v128.load(p, 48));
  }
  let s = horizontalSum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; c < n; c++) s += load<f32>(ptr + (<usize>c << 2));
  return s;
}
