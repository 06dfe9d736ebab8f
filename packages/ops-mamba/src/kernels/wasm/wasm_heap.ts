import * as tf from '@tensorflow/tfjs-core';
import { isSimdEnabled } from './simd_switch';
import { webAssemblyApi, type WasmMemory } from './webassembly_api';

/** What the SIMD kernels need of the tfjs wasm backend's Emscripten module. */
interface EmscriptenModuleLike {
  asm?: { memory?: WasmMemory };
  _malloc(bytes: number): number;
  _free(ptr: number): void;
}

/** The tfjs wasm heap: its memory (which our own modules import) and its allocator. */
export interface WasmHeap {
  memory: WasmMemory;
  malloc(bytes: number): number;
  free(ptr: number): void;
}

/**
 * The wasm heap when the active backend is `wasm`, SIMD is enabled, and every array is a view of
 * that heap (as the fused wasm kernels' inputs and outputs are); otherwise null (use the JS body).
 */
export function wasmHeapOf(arrays: readonly (ArrayBufferView | undefined)[]): WasmHeap | null {
  if (!isSimdEnabled() || tf.getBackend() !== 'wasm' || webAssemblyApi() === undefined) return null;
  const module = (tf.backend() as unknown as { wasm?: EmscriptenModuleLike }).wasm;
  const memory = module?.asm?.memory;
  if (module === undefined || memory === undefined) return null;
  if (arrays.some((a) => a !== undefined && a.buffer !== memory.buffer)) return null;
  return {
    memory,
    malloc: (bytes) => module._malloc(bytes) >>> 0,
    free: (ptr) => module._free(ptr),
  };
}
