import * as fs from 'node:fs';
import * as path from 'node:path';
import { isSimdEnabled } from './simd_switch';
import { wasmHeap, type WasmHeap } from './wasm_heap';
import { webAssemblyApi, type WasmMemory } from './webassembly_api';

/**
 * graniteflow's WebAssembly SIMD kernel modules: AssemblyScript sources in `assembly/` (one file per
 * kernel family), compiled at build time (`npm run build:wasm`) to `wasm/<family>.wasm`. Each module
 * imports the tfjs wasm backend's memory, so its functions take heap byte addresses and read and
 * write tensor data in place. This file is the one place that finds, compiles and instantiates
 * them, checks that SIMD may run, and counts the calls (tests prove with the counts that the SIMD
 * path ran rather than a fallback).
 */

const calls = new Map<string, number>();

/** Records one run of the SIMD kernel `kernel` (call it after the module's function returned). */
export function countSimdCall(kernel: string): void {
  calls.set(kernel, (calls.get(kernel) ?? 0) + 1);
}

/** How many times each SIMD kernel has run in this process, by kernel name (e.g. `PackedMatMul/q8_0`). */
export function simdCounters(): Record<string, number> {
  return Object.fromEntries(calls);
}

/**
 * Where a package's built SIMD modules are: `dir` holds `<family>.wasm` for each AssemblyScript
 * source `assembly/<family>.ts` of the package `packageName` (built by the repository's
 * `tools/build-wasm`, run by the package's `build:wasm` script).
 */
export interface SimdModuleSource {
  readonly packageName: string;
  readonly dir: string;
}

/** This package's modules: `wasm/` at the package root, seen from `src/kernels` and `dist/kernels` alike. */
export const CORE_SIMD_MODULES: SimdModuleSource = {
  packageName: '@graniteflow/core',
  dir: path.join(__dirname, '..', '..', 'wasm'),
};

/** Where the built module of a kernel family is expected. */
export function simdModulePath(family: string, source: SimdModuleSource = CORE_SIMD_MODULES): string {
  return path.join(source.dir, `${family}.wasm`);
}

const compiled = new Map<string, object>();

/** The key of a family's module and instances: its package and name (no path work per call). */
const moduleKey = (family: string, source: SimdModuleSource) => `${source.packageName}/${family}`;

function compile(family: string, source: SimdModuleSource): object {
  const key = moduleKey(family, source);
  let mod = compiled.get(key);
  if (mod === undefined) {
    const file = simdModulePath(family, source);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      throw new Error(
        `The WebAssembly SIMD kernels "${family}" of ${source.packageName} are not built: ${file} is missing. ` +
          `Build them with \`npm run build:wasm -w ${source.packageName}\` from the repository root (\`npm run build\` ` +
          'and `npm test` do it too), or set GRANITEFLOW_SIMD=0 to run the JavaScript kernels instead.',
      );
    }
    mod = new (webAssemblyApi()!.Module)(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    compiled.set(key, mod);
  }
  return mod;
}

/** Instances per memory: a new wasm backend (or a threaded build's new memory) gets its own. */
const instances = new WeakMap<WasmMemory, Map<string, Record<string, unknown>>>();

/**
 * The exports of kernel family `family` instantiated against `memory` (once per memory object, and
 * synchronously: the modules are small and have no start function). Throws, naming the file and the
 * command that builds it, when the module has not been built.
 */
export function simdInstance<E>(family: string, memory: WasmMemory, source: SimdModuleSource = CORE_SIMD_MODULES): E {
  const key = moduleKey(family, source);
  let byFamily = instances.get(memory);
  if (byFamily === undefined) {
    byFamily = new Map();
    instances.set(memory, byFamily);
  }
  let exports = byFamily.get(key);
  if (exports === undefined) {
    exports = new (webAssemblyApi()!.Instance)(compile(family, source), { env: { memory } }).exports;
    byFamily.set(key, exports);
  }
  return exports as E;
}

/** A kernel family's functions bound to the active wasm backend's heap. */
export interface SimdKernels<E> {
  /** The heap: its allocator gives scratch space the functions can address. */
  readonly heap: WasmHeap;
  /** The module's exported functions. */
  readonly exports: E;
}

/**
 * Kernel family `family` ready to run on the arrays `views`, or null (run the JS body) when SIMD is
 * switched off (`setSimdEnabled(false)`, `GRANITEFLOW_SIMD=0`), the active backend is not `wasm`,
 * the engine lacks WebAssembly SIMD, or any of `views` is not a view of the wasm heap (then its
 * byteOffset is no heap address; `undefined` entries, absent optional arrays, are skipped). Read
 * the views' byteOffsets before any `heap.malloc`: growing the memory detaches them.
 */
export function simdKernels<E>(
  family: string,
  views: readonly (ArrayBufferView | undefined)[],
  source: SimdModuleSource = CORE_SIMD_MODULES,
): SimdKernels<E> | null {
  if (!isSimdEnabled()) return null;
  const heap = wasmHeap();
  if (heap === null) return null;
  if (views.some((v) => v !== undefined && v.buffer !== heap.memory.buffer)) return null;
  return { heap, exports: simdInstance<E>(family, heap.memory, source) };
}
