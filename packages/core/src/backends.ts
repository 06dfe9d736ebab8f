import * as tf from '@tensorflow/tfjs-core';
import * as path from 'node:path';
import { NATIVE_BACKEND, registerNativeBackend } from './native/native_backend';
import { nativeUnavailableReason } from './native/native_addon';
import { registerWasmTransposedMatMul } from './kernels/wasm_transposed_matmul';
import { registerTrainingKernels } from './kernels/unsorted_segment_sum';
import { environmentVariable } from './environment';

/** Backends graniteflow knows how to initialise. */
export type BackendName = 'native' | 'wasm' | 'cpu' | 'tensorflow' | 'webgl' | 'webgpu';

const KNOWN_BACKENDS: readonly BackendName[] = ['native', 'wasm', 'cpu', 'tensorflow', 'webgl', 'webgpu'];

/** Thrown when a backend is unknown, not installed or fails to start. */
export class BackendError extends Error {
  override name = 'BackendError';
}

/** The npm package that provides each backend, named in install hints. */
export const BACKEND_PACKAGES: Record<BackendName, string> = {
  native: '@graniteflow/native',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
  tensorflow: '@tensorflow/tfjs-node',
  webgl: '@tensorflow/tfjs-backend-webgl',
  webgpu: '@tensorflow/tfjs-backend-webgpu',
};

function isBackendName(name: string): name is BackendName {
  return (KNOWN_BACKENDS as readonly string[]).includes(name);
}

function tryRequire(moduleName: string): unknown {
  try {
    return require(moduleName);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

// At load, not when graniteflow starts the wasm backend: a program calling tf.setBackend('wasm')
// itself trains too (the matmul fix needs tfjs-backend-wasm loaded first; initBackend redoes it).
// tfjs-backend-cpu first (a dependency, loaded for native anyway): its quadratic UnsortedSegmentSum is replaced.
tryRequire('@tensorflow/tfjs-backend-cpu');
registerTrainingKernels();
registerWasmTransposedMatMul();

/**
 * Makes the wasm backend load its .wasm binaries from the installed npm package, so nothing is
 * fetched over the network and the files match the JS glue of the same version.
 */
function registerWasm(): boolean {
  const wasm = tryRequire('@tensorflow/tfjs-backend-wasm') as { setWasmPaths(prefix: string): void } | undefined;
  if (wasm === undefined) return false;
  const pkgJson = require.resolve('@tensorflow/tfjs-backend-wasm/package.json');
  wasm.setWasmPaths(path.join(path.dirname(pkgJson), 'dist') + path.sep);
  registerWasmTransposedMatMul(); // its kernels exist once the package is loaded
  return true;
}

function registerTensorflow(): boolean {
  // tfjs-node-gpu registers the same "tensorflow" backend name.
  return tryRequire('@tensorflow/tfjs-node') !== undefined || tryRequire('@tensorflow/tfjs-node-gpu') !== undefined;
}

/** Loads the package behind a backend (which registers it with tfjs); false when not installed. */
function loadBackendPackage(name: BackendName): boolean {
  if (tf.findBackendFactory(name) != null) return true;
  switch (name) {
    case 'native':
      return registerNativeBackend();
    case 'wasm':
      return registerWasm();
    case 'cpu':
      return tryRequire('@tensorflow/tfjs-backend-cpu') !== undefined;
    case 'tensorflow':
      return registerTensorflow();
    case 'webgl':
    case 'webgpu':
      return tryRequire(BACKEND_PACKAGES[name]) !== undefined;
  }
}

/** True when the backend's package is installed and registered (does not initialise it). */
export function isBackendAvailable(name: BackendName): boolean {
  return loadBackendPackage(name);
}

/** Backends whose packages are installed here, in order of preference for Node. */
export function availableBackends(): BackendName[] {
  return (['native', 'tensorflow', 'wasm', 'cpu'] as const).filter((b) => isBackendAvailable(b));
}

/**
 * The backend to use when the caller names none: `GRANITEFLOW_BACKEND` if set, otherwise `native`
 * when `@graniteflow/native` loads (multi-threaded SIMD kernels, packed weights, no heap ceiling),
 * otherwise `wasm` (XNNPACK matmuls, ~40x the pure-JS cpu backend), otherwise `cpu`.
 */
export function defaultBackendName(): BackendName {
  const fromEnv = environmentVariable('GRANITEFLOW_BACKEND');
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isBackendName(fromEnv)) {
      throw new BackendError(
        `GRANITEFLOW_BACKEND="${fromEnv}" is not a backend graniteflow knows; expected one of ${KNOWN_BACKENDS.join(', ')}.`,
      );
    }
    return fromEnv;
  }
  if (isBackendAvailable('native')) return 'native';
  return isBackendAvailable('wasm') ? 'wasm' : 'cpu';
}

/**
 * Selects and initialises a tfjs backend by name (default: {@link defaultBackendName}).
 * Fails with the npm package to install when the backend is not available.
 *
 * @example
 * ```ts
 * await initBackend('wasm');
 * ```
 */
export async function initBackend(name?: BackendName | string): Promise<BackendName> {
  const wanted = name ?? defaultBackendName();
  if (!isBackendName(wanted)) {
    throw new BackendError(`Unknown backend "${wanted}"; expected one of ${KNOWN_BACKENDS.join(', ')}.`);
  }
  if (!loadBackendPackage(wanted)) {
    if (wanted === NATIVE_BACKEND) {
      throw new BackendError(`The "native" backend is not available: ${nativeUnavailableReason()}.`);
    }
    throw new BackendError(`The "${wanted}" backend is not installed. Install it with: npm install ${BACKEND_PACKAGES[wanted]}`);
  }
  if (tf.getBackend() === wanted) return wanted;
  let ok: boolean;
  const handlersBefore = processErrorHandlers();
  try {
    ok = await tf.setBackend(wanted);
    await tf.ready();
  } catch (err) {
    throw new BackendError(`The "${wanted}" backend failed to start: ${(err as Error).message}`);
  } finally {
    removeHandlersAddedSince(handlersBefore);
  }
  if (!ok) throw new BackendError(`The "${wanted}" backend failed to initialise.`);
  if (wanted === 'cpu' || wanted === NATIVE_BACKEND) silenceCpuNodeAdvice();
  return wanted;
}

const ERROR_EVENTS = ['uncaughtException', 'unhandledRejection'] as const;
type ErrorHandlers = Record<(typeof ERROR_EVENTS)[number], readonly unknown[]>;

function processErrorHandlers(): ErrorHandlers | null {
  if (typeof process === 'undefined' || typeof process.listeners !== 'function') return null;
  return { uncaughtException: process.listeners('uncaughtException'), unhandledRejection: process.listeners('unhandledRejection') };
}

/**
 * tfjs-backend-wasm's Emscripten glue adds process-wide `uncaughtException` / `unhandledRejection`
 * handlers that rethrow every error of the user's program from inside its 38 KB minified line (and
 * its own dispose, meant to remove them, filters nothing). What starting a backend added is removed,
 * so errors reach Node's own reporting, with their stacks.
 */
function removeHandlersAddedSince(before: ErrorHandlers | null): void {
  if (before === null) return;
  for (const event of ERROR_EVENTS) {
    const emitter = process as unknown as NodeJS.EventEmitter;
    for (const handler of emitter.listeners(event)) {
      if (!before[event].includes(handler)) emitter.removeListener(event, handler as (...args: unknown[]) => void);
    }
  }
}

/**
 * The cpu backend prints "install tfjs-node" on first use in Node. graniteflow picks backends itself
 * (and tells users which package to install), so that advice is noise in every CLI run and test.
 */
function silenceCpuNodeAdvice(): void {
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if ('firstUse' in backend) backend.firstUse = false;
}

/** The name of the active backend. */
export function activeBackend(): string {
  return tf.getBackend();
}
