/**
 * A tiny WebAssembly SIMD module (hand-assembled below, ~300 bytes) that imports a
 * `WebAssembly.Memory` and runs matrix-vector products on it in place. Used by the fused expert
 * kernel when its arrays are views of the tfjs wasm heap: the selected experts' weights are read
 * where they lie, never copied, at f32x4 width. Backend-free: it only needs a memory and a malloc.
 */

import type { WasmMemory, WebAssemblyApi } from '@graniteflow/core';

/**
 * The engine's WebAssembly namespace. Typed by core, but read here rather than through core's
 * `webAssemblyApi()`: this file is part of the `./shared` entry, which must load without tfjs
 * (a type-only import of core is erased; a value import would load core and tfjs with it).
 */
const webAssembly = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly!;

/** y[r] = alpha · Σ_c W[r, c] · x[c] + beta · y[r] for r < rows; all arguments are byte addresses. */
export type GemvFn = (w: number, x: number, y: number, rows: number, cols: number, alpha: number, beta: number) => void;
/** Σ of `n` float32 starting at byte address `ptr` (a memory-bound read, for benchmarks). */
export type SumFn = (ptr: number, n: number) => number;

// Opcodes used (WebAssembly core + SIMD spec).
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR = 0x0c, BR_IF = 0x0d, VOID = 0x40;
const LGET = 0x20, LSET = 0x21;
const I32_CONST = 0x41, I32_ADD = 0x6a, I32_MUL = 0x6c, I32_GE_U = 0x4f, I32_GT_U = 0x4b;
const F32_LOAD = 0x2a, F32_STORE = 0x38, F32_ADD = 0x92, F32_MUL = 0x94;
const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
const SIMD = 0xfd;
const v128Load = (offset: number) => [SIMD, 0x00, 0x00, ...uleb(offset)];
const v128Zero = [SIMD, 0x0c, ...new Array<number>(16).fill(0)];
const f32x4Add = [SIMD, 0xe4, 0x01];
const f32x4Mul = [SIMD, 0xe6, 0x01];
const f32x4Lane = (lane: number) => [SIMD, 0x1f, lane];

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const str = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const i32c = (v: number) => [I32_CONST, ...uleb(v)]; // small non-negative constants only

/** addr = base + idx·4 (both locals) left on the stack. */
const addr4 = (base: number, idx: number) => [LGET, base, LGET, idx, ...i32c(4), I32_MUL, I32_ADD];

/** Horizontal sum of four v128 accumulators (locals a..a+3) into f32 local `s`. */
function reduceInto(a: number, s: number): number[] {
  const v = [LGET, a, LGET, a + 1, ...f32x4Add, LGET, a + 2, ...f32x4Add, LGET, a + 3, ...f32x4Add];
  return [
    ...v, ...f32x4Lane(0), ...v, ...f32x4Lane(1), F32_ADD,
    ...v, ...f32x4Lane(2), F32_ADD, ...v, ...f32x4Lane(3), F32_ADD, LSET, s,
  ];
}

/**
 * gemv(w, x, y, rows, cols, alpha, beta). Locals: 7 r, 8 c, 9 wp, 10 yp (i32); 11..14 acc (v128);
 * 15 s (f32). 16 columns per step in four accumulators, then a scalar tail.
 */
function gemvBody(): number[] {
  const [W, X, Y, ROWS, COLS, ALPHA, BETA, R, C, WP, YP, ACC, S] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15];
  const accStep = (k: number) => [
    LGET, ACC + k, ...addr4(WP, C), ...v128Load(16 * k), ...addr4(X, C), ...v128Load(16 * k),
    ...f32x4Mul, ...f32x4Add, LSET, ACC + k,
  ];
  const code = [
    ...i32c(0), LSET, R,
    BLOCK, VOID, LOOP, VOID,
    LGET, R, LGET, ROWS, I32_GE_U, BR_IF, 1,
    ...[0, 1, 2, 3].flatMap((k) => [...v128Zero, LSET, ACC + k]),
    ...i32c(0), LSET, C,
    // wp = w + r·cols·4
    LGET, W, LGET, R, LGET, COLS, I32_MUL, ...i32c(4), I32_MUL, I32_ADD, LSET, WP,
    BLOCK, VOID, LOOP, VOID,
    LGET, C, ...i32c(16), I32_ADD, LGET, COLS, I32_GT_U, BR_IF, 1,
    ...[0, 1, 2, 3].flatMap(accStep),
    LGET, C, ...i32c(16), I32_ADD, LSET, C,
    BR, 0, END, END,
    ...reduceInto(ACC, S),
    BLOCK, VOID, LOOP, VOID,
    LGET, C, LGET, COLS, I32_GE_U, BR_IF, 1,
    LGET, S, ...addr4(WP, C), F32_LOAD, 0x02, 0x00, ...addr4(X, C), F32_LOAD, 0x02, 0x00, F32_MUL, F32_ADD, LSET, S,
    LGET, C, ...i32c(1), I32_ADD, LSET, C,
    BR, 0, END, END,
    // y[r] = alpha·s + beta·y[r]
    ...addr4(Y, R), LSET, YP,
    LGET, YP, LGET, ALPHA, LGET, S, F32_MUL, LGET, BETA, LGET, YP, F32_LOAD, 0x02, 0x00, F32_MUL, F32_ADD,
    F32_STORE, 0x02, 0x00,
    LGET, R, ...i32c(1), I32_ADD, LSET, R,
    BR, 0, END, END,
    END,
  ];
  const locals = vec([[...uleb(4), I32], [...uleb(4), V128], [...uleb(1), F32]]);
  return [...locals, ...code];
}

/** sum(ptr, n). Locals: 2 c (i32); 3..6 acc (v128); 7 s (f32). */
function sumBody(): number[] {
  const [P, N, C, ACC, S] = [0, 1, 2, 3, 7];
  const accStep = (k: number) => [LGET, ACC + k, ...addr4(P, C), ...v128Load(16 * k), ...f32x4Add, LSET, ACC + k];
  const code = [
    ...[0, 1, 2, 3].flatMap((k) => [...v128Zero, LSET, ACC + k]),
    BLOCK, VOID, LOOP, VOID,
    LGET, C, ...i32c(16), I32_ADD, LGET, N, I32_GT_U, BR_IF, 1,
    ...[0, 1, 2, 3].flatMap(accStep),
    LGET, C, ...i32c(16), I32_ADD, LSET, C,
    BR, 0, END, END,
    ...reduceInto(ACC, S),
    BLOCK, VOID, LOOP, VOID,
    LGET, C, LGET, N, I32_GE_U, BR_IF, 1,
    LGET, S, ...addr4(P, C), F32_LOAD, 0x02, 0x00, F32_ADD, LSET, S,
    LGET, C, ...i32c(1), I32_ADD, LSET, C,
    BR, 0, END, END,
    LGET, S,
    END,
  ];
  const locals = vec([[...uleb(1), I32], [...uleb(4), V128], [...uleb(1), F32]]);
  return [...locals, ...code];
}

function moduleBytes(): Uint8Array {
  const types = vec([
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F32], [F32]]), ...vec([])],
    [0x60, ...vec([[I32], [I32]]), ...vec([[F32]])],
  ]);
  // (import "env" "memory" (memory 0)): no maximum, so any non-shared memory satisfies it.
  const imports = vec([[...str('env'), ...str('memory'), 0x02, 0x00, 0x00]]);
  const funcs = vec([[0], [1]]);
  const exports = vec([
    [...str('gemv'), 0x00, 0x00],
    [...str('sum'), 0x00, 0x01],
  ]);
  const bodies = [gemvBody(), sumBody()].map((b) => [...uleb(b.length), ...b]);
  const code = vec(bodies);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, types), ...section(2, imports), ...section(3, funcs),
    ...section(7, exports), ...section(10, code),
  ]);
}

/** The SIMD routines bound to one memory, plus a scratch area inside it. */
export interface SimdHeap {
  readonly memory: WasmMemory;
  readonly gemv: GemvFn;
  readonly sum: SumFn;
  /** True when `a` is a view of this memory (so its byteOffset is a heap address). */
  owns(a: ArrayBufferView): boolean;
  /**
   * Makes sure a scratch area of `floats` float32 exists (may grow the memory: call it before
   * taking views) and returns its byte address.
   */
  reserve(floats: number): number;
  /** Float32 capacity of the scratch area reserved so far. */
  readonly scratchFloats: number;
  /** A view of the scratch area over the current buffer. */
  scratch(floats: number): Float32Array;
}

let compiled: object | null | undefined;

/** Compiles the module once; null when this engine lacks WebAssembly SIMD. */
function simdModule(): object | null {
  if (compiled === undefined) {
    try {
      compiled = new webAssembly.Module(moduleBytes());
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/**
 * Binds the SIMD routines to `memory`, allocating scratch with `malloc` (byte count → address)
 * and releasing it with `free`.
 * Returns null when WebAssembly SIMD is unavailable.
 */
export function bindSimdHeap(
  memory: WasmMemory,
  malloc: (bytes: number) => number,
  free: (ptr: number) => void,
): SimdHeap | null {
  const mod = simdModule();
  if (mod === null) return null;
  const inst = new webAssembly.Instance(mod, { env: { memory } });
  const gemv = inst.exports.gemv as GemvFn;
  const sum = inst.exports.sum as SumFn;
  let scratchPtr = 0;
  let scratchFloats = 0;
  return {
    memory,
    gemv,
    sum,
    owns: (a) => a.buffer === memory.buffer,
    get scratchFloats() {
      return scratchFloats;
    },
    reserve(floats) {
      if (floats > scratchFloats) {
        if (scratchFloats > 0) free(scratchPtr);
        scratchPtr = malloc(floats * 4) >>> 0;
        scratchFloats = floats;
      }
      return scratchPtr;
    },
    scratch: (floats) => new Float32Array(memory.buffer, scratchPtr, floats),
  };
}
