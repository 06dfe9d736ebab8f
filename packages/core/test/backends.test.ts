import * as tf from '@tensorflow/tfjs-core';
import { BackendError, availableBackends, defaultBackendName, initBackend } from '../src';

describe('backends', () => {
  const saved = process.env.GRANITEFLOW_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.GRANITEFLOW_BACKEND;
    else process.env.GRANITEFLOW_BACKEND = saved;
  });

  it('defaults to native (wasm with GRANITEFLOW_NATIVE=0) in Node and honours GRANITEFLOW_BACKEND', () => {
    delete process.env.GRANITEFLOW_BACKEND;
    expect(defaultBackendName()).toBe(process.env.GRANITEFLOW_NATIVE === '0' ? 'wasm' : 'native');
    process.env.GRANITEFLOW_BACKEND = 'cpu';
    expect(defaultBackendName()).toBe('cpu');
    process.env.GRANITEFLOW_BACKEND = 'tpu';
    expect(() => defaultBackendName()).toThrow(/GRANITEFLOW_BACKEND="tpu" is not a backend/);
  });

  it('initialises wasm from the installed package and cpu', async () => {
    expect(availableBackends()).toEqual(expect.arrayContaining(['wasm', 'cpu']));
    expect(await initBackend('wasm')).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(await initBackend('cpu')).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('names the npm package of a backend that is not installed', async () => {
    await expect(initBackend('tensorflow')).rejects.toThrow(
      /"tensorflow" backend is not installed. Install it with: npm install @tensorflow\/tfjs-node/,
    );
    await expect(initBackend('quantum')).rejects.toThrow(BackendError);
  });
});
