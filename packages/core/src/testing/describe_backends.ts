import { initBackend, isBackendAvailable, type BackendName } from '../backends';

// The test runner's globals (jest, or vitest with globals), typed here so that users of this
// module need no particular runner's type package.
declare const describe: (name: string, body: () => void) => void;
declare const beforeAll: (hook: () => unknown) => void;

/**
 * Backends the backend-tier tests run on: `GRANITEFLOW_TEST_BACKENDS` (comma-separated) if set,
 * otherwise every one of cpu, wasm, native and tensorflow that is available.
 */
export function testBackends(): BackendName[] {
  const fromEnv = process.env.GRANITEFLOW_TEST_BACKENDS;
  const wanted = fromEnv
    ? (fromEnv.split(',').map((s) => s.trim()) as BackendName[])
    : (['cpu', 'wasm', 'native', 'tensorflow'] as BackendName[]);
  return wanted.filter((b) => isBackendAvailable(b));
}

/**
 * Runs a jest suite once per test backend, with the backend initialised before the suite's tests.
 *
 * @example
 * ```ts
 * describeBackends('selectiveScan', (backend) => {
 *   it('matches the reference', () => { ... });
 * });
 * ```
 */
export function describeBackends(name: string, suite: (backend: BackendName) => void): void {
  for (const backend of testBackends()) {
    describe(`${name} [${backend}]`, () => {
      beforeAll(async () => {
        await initBackend(backend);
      });
      suite(backend);
    });
  }
}
