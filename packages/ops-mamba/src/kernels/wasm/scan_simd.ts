import * as path from 'node:path';
import { countSimdCall, simdKernels, type SimdKernels, type SimdModuleSource } from '@graniteflow/core';
import { discretizeDt } from '../discretize_impl';
import type { ScanDims } from '../SelectiveScan_impl';

/** This package's WebAssembly SIMD modules: `wasm/` at the package root (built from `assembly/`). */
export const OPS_MAMBA_SIMD_MODULES: SimdModuleSource = {
  packageName: '@graniteflow/ops-mamba',
  dir: path.join(__dirname, '..', '..', '..', 'wasm'),
};
const SELECTIVE_SCAN = 'selective_scan';

/** Counter name of the SIMD scan in core's `simdCounters()` (one count per scan or state update). */
export const SELECTIVE_SCAN_SIMD_CALL = 'SelectiveScan';

/** Tile widths (in f32x4 vectors along N) of `assembly/selective_scan.ts`; the widest that divides N is used. */
const SCAN_TILES = [8, 4, 2, 1] as const;
type ScanTile = (typeof SCAN_TILES)[number];

/** One head's scan; see `assembly/selective_scan.ts` for the arguments (byte addresses and strides). */
type ScanHeadFn = (
  x: number, y: number, xyStride: number, B: number, C: number, bcStride: number,
  dt: number, decay: number, stateIn: number, stateOut: number, T: number, P: number, N: number, Dh: number,
) => void;

/** The functions of the built `selective_scan` module. */
export type ScanExports = Record<`scan_v${ScanTile}`, ScanHeadFn>;

/**
 * The SIMD scan bound to the heap when it can run on `views` (core's `simdKernels`: the wasm
 * backend with SIMD on and every array a view of its heap), else null (run the JS loop).
 */
export function scanSimdKernels(views: readonly (ArrayBufferView | undefined)[]): SimdKernels<ScanExports> | null {
  return simdKernels<ScanExports>(SELECTIVE_SCAN, views, OPS_MAMBA_SIMD_MODULES);
}

/** The widest tile that divides N, or null when N is not a multiple of 4. */
function tileFor(N: number): ScanTile | null {
  return SCAN_TILES.find((V) => N % (4 * V) === 0) ?? null;
}

/** True when {@link selectiveScanSimd} can run these sizes. */
export function simdScanSupports(dims: ScanDims): boolean {
  return dims.seqLen >= 1 && tileFor(dims.stateSize) !== null;
}

/** Byte addresses of the scan's arrays in the wasm heap. */
export interface ScanPointers {
  x: number;
  dt: number;
  A_log: number;
  B: number;
  C: number;
  D: number;
  dt_bias: number;
  /** null: start from zeros (then `finalState` must arrive zero-filled) */
  initialState: number | null;
  y: number;
  finalState: number;
}

/**
 * The selective scan on the wasm heap with the SIMD head function: dt and exp(dt·A) are computed
 * per (b, t, h) in JS into scratch memory (B·Hm·T·2 floats), then one call per (b, h) scans all
 * tokens. Same math as `selectiveScanImpl`; `y` must arrive zero-filled.
 */
export function selectiveScanSimd(simd: SimdKernels<ScanExports>, ptr: ScanPointers, dims: ScanDims, dtMin: number, dtMax: number): void {
  const { batch, seqLen: T, heads: Hm, headDim: P, groups: G, stateSize: N } = dims;
  const V = tileFor(N);
  if (V === null || T < 1) throw new RangeError(`selectiveScanSimd: unsupported sizes T = ${T}, N = ${N}`);
  const { heap } = simd;
  const scan = simd.exports[`scan_v${V}`];
  const scratch = heap.malloc(2 * batch * Hm * T * 4);
  try {
    // Views made after malloc: it may have grown (and so detached) the heap's buffer.
    const f = new Float32Array(heap.memory.buffer);
    const at = (p: number) => p >>> 2;
    const dtOut = at(scratch); // [B, Hm, T]
    const decayOut = dtOut + batch * Hm * T; // [B, Hm, T]
    for (let h = 0; h < Hm; h++) {
      const A = -Math.exp(f[at(ptr.A_log) + h]);
      const bias = f[at(ptr.dt_bias) + h];
      for (let b = 0; b < batch; b++) {
        const o = (b * Hm + h) * T;
        for (let t = 0; t < T; t++) {
          const dt = discretizeDt(f[at(ptr.dt) + (b * T + t) * Hm + h], bias, dtMin, dtMax);
          f[dtOut + o + t] = dt;
          f[decayOut + o + t] = Math.exp(dt * A);
        }
      }
    }
    const hpg = Hm / G;
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < Hm; h++) {
        const g = Math.floor(h / hpg);
        const o = (b * Hm + h) * T;
        const state = ptr.finalState + (b * Hm + h) * P * N * 4;
        const stateIn = ptr.initialState === null ? state : ptr.initialState + (b * Hm + h) * P * N * 4;
        scan(
          ptr.x + (b * T * Hm + h) * P * 4,
          ptr.y + (b * T * Hm + h) * P * 4,
          Hm * P * 4,
          ptr.B + (b * T * G + g) * N * 4,
          ptr.C + (b * T * G + g) * N * 4,
          G * N * 4,
          scratch + (o << 2),
          scratch + ((batch * Hm * T + o) << 2),
          stateIn,
          state,
          T,
          P,
          N,
          f[at(ptr.D) + h],
        );
      }
    }
  } finally {
    heap.free(scratch);
  }
  countSimdCall(SELECTIVE_SCAN_SIMD_CALL);
}
