/**
 * The few WebAssembly JS-API members the SIMD kernels use, typed here because the package compiles
 * without the DOM lib (which is where TypeScript declares them).
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

export interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

/** The global `WebAssembly`, or undefined where there is none. */
export function webAssemblyApi(): WebAssemblyApi | undefined {
  return (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
}
