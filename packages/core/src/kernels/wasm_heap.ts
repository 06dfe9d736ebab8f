import * as tf from '@tensorflow/tfjs-core';
import { webAssemblyApi, type WasmMemory } from './webassembly_api';

/**
 * The tfjs wasm backend's heap: the memory its tensors live in (which a kernel's own WebAssembly
 * module can import, so it reads and writes tensor data in place) and the backend's allocator for
 * scratch space in that memory.
 */
export interface WasmHeap {
  readonly memory: WasmMemory;
  /** Allocates `bytes` in the heap; returns the (unsigned) byte address. May grow the memory. */
  malloc(bytes: number): number;
  /** Releases an address returned by {@link WasmHeap.malloc}. */
  free(ptr: number): void;
}

/** What is needed of the wasm backend's Emscripten module (not part of tfjs's public types). */
interface EmscriptenModuleLike {
  /** The module's exports; `memory` is among them in the single-threaded build. */
  asm?: { memory?: unknown };
  /** The memory in builds that import it rather than export it. */
  wasmMemory?: unknown;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
}

/**
 * `(module (func (result v128) v128.const 0))`: validates only where WebAssembly SIMD is
 * supported, which every kernel built on {@link wasmHeap} relies on.
 */
const SIMD_PROBE = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version
  0x01,
  0x05,
  0x01,
  0x60,
  0x00,
  0x01,
  0x7b, // type section: () -> v128
  0x03,
  0x02,
  0x01,
  0x00, // function section
  0x0a,
  0x16,
  0x01,
  0x14,
  0x00,
  0xfd,
  0x0c,
  ...new Array<number>(16).fill(0),
  0x0b, // code: v128.const 0
]);

let simdSupported: boolean | undefined;

/** Whether this engine has WebAssembly with SIMD (probed once). */
export function hasWasmSimd(): boolean {
  if (simdSupported === undefined) {
    const wasm = webAssemblyApi();
    try {
      simdSupported = wasm?.validate(SIMD_PROBE) ?? false;
    } catch {
      simdSupported = false;
    }
  }
  return simdSupported;
}

/**
 * The active tfjs wasm backend's heap, or null when the active backend is not `wasm` (or not ready
 * yet), the engine lacks WebAssembly SIMD, or the heap is not a plain `WebAssembly.Memory` (a
 * threaded build's shared memory cannot be imported by the kernels' non-shared modules).
 *
 * Only the already-active backend is looked at: unlike `tf.findBackend('wasm')`, this never starts
 * initialising a backend, so it is safe to call from inside any kernel. The caller still checks
 * that its arrays are views of `heap.memory.buffer` before treating their byteOffsets as addresses,
 * and takes views only after its last `malloc` (growing the memory detaches the old buffer).
 */
export function wasmHeap(): WasmHeap | null {
  if (tf.getBackend() !== 'wasm' || !hasWasmSimd()) return null;
  let backend: { wasm?: EmscriptenModuleLike };
  try {
    backend = tf.backend() as unknown as { wasm?: EmscriptenModuleLike };
  } catch {
    return null; // selected but still initialising
  }
  const module = backend?.wasm;
  if (module == null) return null;
  const memory = module.asm?.memory ?? module.wasmMemory;
  const wasm = webAssemblyApi()!;
  if (!(memory instanceof wasm.Memory)) return null;
  if (typeof SharedArrayBuffer !== 'undefined' && (memory as WasmMemory).buffer instanceof SharedArrayBuffer) return null;
  return {
    memory: memory as WasmMemory,
    malloc: (bytes) => module._malloc(bytes) >>> 0,
    free: (ptr) => module._free(ptr),
  };
}

/** The scratch area kept in each heap, by memory (a new wasm backend gets its own). */
const scratchAreas = new WeakMap<WasmMemory, { ptr: number; floats: number }>();

/**
 * Makes sure the active wasm heap holds a scratch area of at least `floats` float32 that kernels
 * can address ({@link heapScratch}), keeping it across calls. Reserving may grow the memory and so
 * detach every view of it: call it before a kernel runs (e.g. when a module is built or before its
 * forward pass), never while holding views. No-op when {@link wasmHeap} is null.
 */
export function reserveHeapScratch(floats: number): void {
  const heap = wasmHeap();
  if (heap === null) return;
  const area = scratchAreas.get(heap.memory);
  if (area !== undefined && area.floats >= floats) return;
  if (area !== undefined) heap.free(area.ptr);
  scratchAreas.set(heap.memory, { ptr: heap.malloc(floats * 4), floats });
}

/**
 * A view of the first `floats` (default: all) of the scratch area of `heap` when
 * {@link reserveHeapScratch} made it that long, else null (run the JS body: reserving now could
 * detach the caller's views). Kernels run one at a time, so they share the area; none may keep the
 * view past its own call.
 */
export function heapScratch(heap: WasmHeap, floats?: number): Float32Array | null {
  const area = scratchAreas.get(heap.memory);
  if (area === undefined || area.floats < (floats ?? 0)) return null;
  return new Float32Array(heap.memory.buffer, area.ptr, floats ?? area.floats);
}
