import { defaultBackendName } from '../src';
import { environmentVariable } from '../src/environment';

/** Runs `fn` as code does where there is no `process` (a browser), then puts it back. */
function withoutProcess<T>(fn: () => T): T {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'process')!;
  Object.defineProperty(globalThis, 'process', { value: undefined, configurable: true, writable: true });
  try {
    return fn();
  } finally {
    Object.defineProperty(globalThis, 'process', saved);
  }
}

describe('environment variables', () => {
  test('are read in Node and are simply absent where there is no process', () => {
    process.env.GRANITEFLOW_TEST_VARIABLE = 'on';
    try {
      expect(environmentVariable('GRANITEFLOW_TEST_VARIABLE')).toBe('on');
      expect(withoutProcess(() => environmentVariable('GRANITEFLOW_TEST_VARIABLE'))).toBeUndefined();
    } finally {
      delete process.env.GRANITEFLOW_TEST_VARIABLE;
    }
  });

  test('GRANITEFLOW_BACKEND is read through the guard: set it picks the backend, without process nothing throws', () => {
    process.env.GRANITEFLOW_BACKEND = 'cpu';
    try {
      expect(defaultBackendName()).toBe('cpu');
      expect(() => withoutProcess(() => defaultBackendName())).not.toThrow();
    } finally {
      delete process.env.GRANITEFLOW_BACKEND;
    }
  });
});
