import { isSimdEnabled, wasmHeap, type WasmHeap } from '@graniteflow/core';

/**
 * The wasm heap (core's {@link wasmHeap}) when this package's SIMD kernels are switched on and every
 * array is a view of that heap (as the fused wasm kernels' inputs and outputs are); otherwise null
 * (use the JS body).
 */
export function wasmHeapOf(arrays: readonly (ArrayBufferView | undefined)[]): WasmHeap | null {
  if (!isSimdEnabled()) return null;
  const heap = wasmHeap();
  if (heap === null) return null;
  if (arrays.some((a) => a !== undefined && a.buffer !== heap.memory.buffer)) return null;
  return heap;
}
