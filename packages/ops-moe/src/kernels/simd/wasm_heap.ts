import { wasmHeap } from '@graniteflow/core';
import { bindSimdHeap, type SimdHeap } from './gemv_simd';

let cached: SimdHeap | null = null;
let unavailable = false;

/**
 * This package's SIMD routines bound to the tfjs wasm heap (core's {@link wasmHeap}, so never
 * initialising a backend), or null when wasm is not the active backend or the engine lacks
 * WebAssembly SIMD. Bound once per heap memory, so the scratch reserved in it is kept.
 */
export function wasmSimdHeap(): SimdHeap | null {
  if (unavailable) return null;
  const heap = wasmHeap();
  if (heap === null) return null;
  if (cached !== null && cached.memory === heap.memory) return cached;
  cached = bindSimdHeap(heap.memory, heap.malloc, heap.free);
  if (cached === null) unavailable = true;
  return cached;
}
