import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
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

  it("leaves the program's errors to Node: starting wasm keeps no process-wide error handler of tfjs-backend-wasm", () => {
    // In a fresh process: the handlers are added once, when the wasm module first instantiates.
    const src = path.resolve(__dirname, '..', 'src');
    const script = `
      const core = require(${JSON.stringify(src)});
      const count = () => [process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')];
      const before = count();
      core.initBackend('wasm').then(() => {
        console.log(JSON.stringify({ before, after: count() }));
        setTimeout(() => { throw new Error('boom from the program'); }, 0);
      });`;
    const r = spawnSync(process.execPath, [require.resolve('tsx/cli'), '-e', script], { encoding: 'utf8', timeout: 60_000 });
    const { before, after } = JSON.parse(r.stdout.trim());
    expect(after).toEqual(before);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Error: boom from the program\n\s+at /); // Node's report, with the stack
    expect(r.stderr.length).toBeLessThan(4000); // not rethrown from the 38 KB minified glue
  });

  it('names the npm package of a backend that is not installed', async () => {
    await expect(initBackend('tensorflow')).rejects.toThrow(
      /"tensorflow" backend is not installed. Install it with: npm install @tensorflow\/tfjs-node/,
    );
    await expect(initBackend('quantum')).rejects.toThrow(BackendError);
  });
});
