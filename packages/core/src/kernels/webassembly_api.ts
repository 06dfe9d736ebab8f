/**
 * The few members of the WebAssembly JS API that graniteflow's hand-written SIMD kernels use.
 * They are typed here because the packages compile with `lib: ES2022` and without the DOM lib,
 * which is where TypeScript declares `WebAssembly`; one shared declaration keeps the kernels of
 * every ops package agreeing on what a heap memory is.
 */

/** The part of a `WebAssembly.Memory` the kernels use. Its `buffer` is replaced when the memory grows. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/** The part of the global `WebAssembly` namespace the kernels use. */
export interface WebAssemblyApi {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

/** The engine's global `WebAssembly`, or undefined where there is none. */
export function webAssemblyApi(): WebAssemblyApi | undefined {
  return (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
}
