import { encodeModule, F32, FunctionBuilder, I32, V128 } from './wasm_emitter';

/** Tile widths (in f32x4 vectors along N) with a generated function each; the widest that divides N is used. */
export const SCAN_TILES = [8, 4, 2, 1] as const;
export type ScanTile = (typeof SCAN_TILES)[number];

/**
 * The selective scan of one head as a WebAssembly SIMD function, unrolled over a tile of `V` f32x4
 * vectors of the state row S[p, n0 : n0 + 4V]. The tile stays in registers for the whole sequence,
 * so per token and tile the work is 2V vector loads (B, C), 3V state ops, V products, one
 * horizontal sum and one y update; no state traffic to memory (the reason this beats a loop over
 * p and n per token, which reloads and stores the state every token).
 *
 * Signature (byte addresses into the imported memory; strides in bytes):
 * `(x, y, xyStride, B, C, bcStride, dt, decay, stateIn, stateOut, T, P, N, Dh)`
 * - x, y: &x[b, 0, h, 0], &y[b, 0, h, 0]; successive tokens are xyStride apart
 * - B, C: &B[b, 0, g, 0], &C[b, 0, g, 0]; successive tokens are bcStride apart
 * - dt, decay: [T] contiguous, this head's dt_t and exp(dt_t·A)
 * - stateIn / stateOut: this head's [P, N] (may be equal)
 * - y accumulates: y[t, p] += Σ_n S_t[p, n]·C_t[n] per tile, plus Dh·x[t, p] on the first tile,
 *   so y must start at zero. T ≥ 1.
 */
function scanHead(V: ScanTile): FunctionBuilder {
  const [x, y, xyStride, B, C, bcStride, dt, decay, stateIn, stateOut, T, P, N, Dh] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const f = new FunctionBuilder([I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, F32]);
  const p = f.local(I32);
  const j = f.local(I32);
  const t = f.local(I32);
  const off = f.local(I32);
  const xp = f.local(I32);
  const yp = f.local(I32);
  const bp = f.local(I32);
  const cp = f.local(I32);
  const dtp = f.local(I32);
  const dcp = f.local(I32);
  const tiles = f.local(I32);
  const xv = f.local(F32);
  const dTerm = f.local(F32);
  const dAs = f.local(V128);
  const dxs = f.local(V128);
  const acc = f.local(V128);
  const s = Array.from({ length: V }, () => f.local(V128));
  const tileBytes = 16 * V;

  const addTo = (local: number, delta: () => void) => {
    f.get(local);
    delta();
    f.i32Add().set(local);
  };
  // Σ_i S_i·C_i as a balanced tree, so the adds do not form one serial chain.
  const dotTree = (lo: number, hi: number): void => {
    if (hi - lo === 1) {
      f.get(s[lo]).get(cp).v128Load(16 * lo).f32x4Mul();
      return;
    }
    const mid = (lo + hi) >> 1;
    dotTree(lo, mid);
    dotTree(mid, hi);
    f.f32x4Add();
  };

  // tiles = N / (4V)
  f.get(N).i32Const(4 * V).i32DivU().set(tiles);
  f.i32Const(0).set(p);
  f.loop(() => {
    f.i32Const(0).set(j);
    f.loop(() => {
      // off = (p·N + j·4V)·4 bytes
      f.get(p).get(N).i32Mul().get(j).i32Const(4 * V).i32Mul().i32Add().i32Const(4).i32Mul().set(off);
      for (let i = 0; i < V; i++) f.get(stateIn).get(off).i32Add().v128Load(16 * i).set(s[i]);
      // The D·x skip term is added once per (t, p), by the first tile.
      f.get(Dh).f32Const(0).get(j).i32Eqz().select().set(dTerm);
      f.get(x).get(p).i32Const(4).i32Mul().i32Add().set(xp);
      f.get(y).get(p).i32Const(4).i32Mul().i32Add().set(yp);
      f.get(B).get(j).i32Const(tileBytes).i32Mul().i32Add().set(bp);
      f.get(C).get(j).i32Const(tileBytes).i32Mul().i32Add().set(cp);
      f.get(dt).set(dtp);
      f.get(decay).set(dcp);
      f.get(T).set(t);
      f.loop(() => {
        f.get(xp).f32Load().set(xv);
        f.get(dtp).f32Load().get(xv).f32Mul().f32x4Splat().set(dxs);
        f.get(dcp).f32Load().f32x4Splat().set(dAs);
        // S = exp(dt·A)·S + (dt·x)·B
        for (let i = 0; i < V; i++) {
          f.get(s[i]).get(dAs).f32x4Mul();
          f.get(dxs).get(bp).v128Load(16 * i).f32x4Mul();
          f.f32x4Add().set(s[i]);
        }
        dotTree(0, V);
        f.set(acc);
        // y[t, p] += (a0 + a1) + (a2 + a3) + dTerm·x
        f.get(yp);
        f.get(yp).f32Load();
        f.get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add();
        f.get(acc).f32x4ExtractLane(2).get(acc).f32x4ExtractLane(3).f32Add();
        f.f32Add().f32Add();
        f.get(dTerm).get(xv).f32Mul().f32Add();
        f.f32Store();
        addTo(xp, () => f.get(xyStride));
        addTo(yp, () => f.get(xyStride));
        addTo(bp, () => f.get(bcStride));
        addTo(cp, () => f.get(bcStride));
        addTo(dtp, () => f.i32Const(4));
        addTo(dcp, () => f.i32Const(4));
        f.get(t).i32Const(1).i32Sub().tee(t).brIf(0);
      });
      for (let i = 0; i < V; i++) f.get(stateOut).get(off).i32Add().get(s[i]).v128Store(16 * i);
      f.get(j).i32Const(1).i32Add().tee(j).get(tiles).i32LtU().brIf(0);
    });
    f.get(p).i32Const(1).i32Add().tee(p).get(P).i32LtU().brIf(0);
  });
  return f;
}

/** The module's bytes: one exported function `scan_v{V}` per tile width. */
export function scanModuleBytes(): Uint8Array {
  return encodeModule(SCAN_TILES.map((V) => ({ name: `scan_v${V}`, fn: scanHead(V) })));
}
