import * as tf from '@tensorflow/tfjs-core';
import { bindSimdHeap, webAssembly, type SimdHeap, type WasmMemory } from './gemv_simd';

/** What this package needs of the tfjs wasm backend's Emscripten module. */
interface WasmBackendLike {
  wasm?: {
    asm?: { memory?: unknown };
    wasmMemory?: unknown;
    _malloc(bytes: number): number;
    _free(ptr: number): void;
  };
}

let cached: SimdHeap | null = null;
let unavailable = false;

/**
 * The SIMD routines bound to the tfjs wasm backend's heap, or null when that backend is not
 * the active one or the engine lacks WebAssembly SIMD.
 */
export function wasmSimdHeap(): SimdHeap | null {
  if (unavailable) return null;
  // Only the active backend: tf.findBackend would start initialising wasm as a side effect.
  if (tf.getBackend() !== 'wasm') return null;
  const backend = tf.backend() as unknown as WasmBackendLike | null;
  const mod = backend?.wasm;
  if (mod == null) return null;
  const memory = mod.asm?.memory ?? mod.wasmMemory;
  if (!(memory instanceof webAssembly.Memory)) return null;
  if (cached !== null && cached.memory === memory) return cached;
  cached = bindSimdHeap(
    memory as WasmMemory,
    (bytes) => mod._malloc(bytes),
    (ptr) => mod._free(ptr),
  );
  if (cached === null) unavailable = true;
  return cached;
}
