import type * as Api from '../src';
import { KERNELS, LEVELS } from '../src';
import { native } from './setup';

/** A fresh copy of the loader module with `env` applied while it loads (the addon itself is
 * shared by the process: its thread count and level cap are restored after each test). */
function freshLoad(env: Record<string, string | undefined>, missingBinary = false): { api: typeof Api; result: Api.Native | null } {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  try {
    let api!: typeof Api;
    jest.isolateModules(() => {
      if (missingBinary)
        jest.doMock('node-gyp-build', () => ({
          resolve: () => {
            throw new Error('No native build was found for platform=linux arch=x64 runtime=node abi=115 napi=9');
          },
        }));
      api = require('../src') as typeof Api;
    });
    return { api, result: api.loadNative() };
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

const threads = native.threads(),
  level = native.level();
afterEach(() => {
  native.setThreads(threads);
  native.setLevel(level);
  jest.dontMock('node-gyp-build');
});

test('GRANITEFLOW_NATIVE=0: loadNative gives null and says why; requireNative throws it', () => {
  const { api, result } = freshLoad({ GRANITEFLOW_NATIVE: '0' });
  expect(result).toBeNull();
  expect(api.isNativeAvailable()).toBe(false);
  expect(api.nativeUnavailableReason()).toBe('disabled by GRANITEFLOW_NATIVE=0');
  expect(() => api.requireNative()).toThrow('@graniteflow/native is unavailable: disabled by GRANITEFLOW_NATIVE=0');
});

test('no binary for this platform: null with the reason instead of an exception', () => {
  const { api, result } = freshLoad({ GRANITEFLOW_NATIVE: undefined }, true);
  expect(result).toBeNull();
  expect(api.nativeUnavailableReason()).toMatch(
    /^no usable @graniteflow\/native binary for linux-x64 \(looked for build\/Release and prebuilds\/ under .*\): No native build was found/,
  );
});

test('GRANITEFLOW_THREADS and GRANITEFLOW_NATIVE_LEVEL are applied at load', () => {
  const { result } = freshLoad({ GRANITEFLOW_THREADS: '1', GRANITEFLOW_NATIVE_LEVEL: 'scalar' });
  expect(result!.threads()).toBe(1);
  expect(result!.level()).toBe('scalar');
  for (const kernel of KERNELS) expect(result!.kernelLevel(kernel)).toBe('scalar');
});

test('invalid GRANITEFLOW_THREADS / GRANITEFLOW_NATIVE_LEVEL are errors, not silently ignored', () => {
  expect(() => freshLoad({ GRANITEFLOW_THREADS: 'many' })).toThrow("GRANITEFLOW_THREADS must be an integer between 1 and 256, got 'many'");
  expect(() => freshLoad({ GRANITEFLOW_NATIVE_LEVEL: 'avx9' })).toThrow(
    "GRANITEFLOW_NATIVE_LEVEL must be one of scalar, avx2, avx512, got 'avx9'",
  );
});

test('introspection: CPU features, levels and per-kernel counters', () => {
  const features = native.cpuFeatures();
  for (const key of ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512vnni', 'avx512bf16', 'osAvx', 'osAvx512'])
    expect(typeof features[key as keyof typeof features]).toBe('boolean');
  const best = native.cpuLevel();
  expect(LEVELS).toContain(best);
  if (best === 'avx512') expect(features.avx512vnni && features.avx512bw && features.avx512vl && features.osAvx512).toBe(true);
  if (best !== 'scalar') expect(features.avx2 && features.fma && features.f16c && features.osAvx).toBe(true);
  const counters = native.counters();
  expect(Object.keys(counters).sort()).toEqual([...KERNELS].sort());
  native.setLevel('scalar');
  const before = counters['matmul.f32'].scalar;
  native.matmul('f32', new Float32Array(4), 1, 4, new Float32Array(4), 1, new Float32Array(1));
  expect(native.counters()['matmul.f32'].scalar).toBe(before + 1);
});
