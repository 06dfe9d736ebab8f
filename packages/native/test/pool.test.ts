import { Worker } from 'node:worker_threads';
import { quantize, randomFloats } from './reference';
import { native } from './setup';

test('overlapping calls from two JS threads are serialized and stay correct', async () => {
  const out = 96,
    inF = 2048,
    n = 3;
  const w = quantize('q4_0', randomFloats(out * inF, 1));
  const x = randomFloats(n * inF, 2);
  const want = new Float32Array(n * out);
  native.matmul('q4_0', w, out, inF, x, n, want);
  // Each worker loads the same addon (one process-wide pool) and runs matmuls while the main
  // thread runs its own.
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const binding = require(workerData.binaryPath);
    const { w, x, out, inF, n } = workerData;
    const y = new Float32Array(n * out);
    let mismatches = 0;
    for (let i = 0; i < 200; i++) {
      binding.matmul('q4_0', w, out, inF, x, n, y, false);
      for (let j = 0; j < y.length; j++) if (y[j] !== workerData.want[j]) { mismatches++; break; }
    }
    parentPort.postMessage(mismatches);`;
  const workers = [0, 1].map(
    () => new Worker(source, { eval: true, workerData: { binaryPath: native.binaryPath, w, x, out, inF, n, want } }),
  );
  const results = workers.map(
    (worker) =>
      new Promise<number>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
  );
  const y = new Float32Array(n * out);
  let mismatches = 0;
  for (let i = 0; i < 200; i++) {
    native.matmul('q4_0', w, out, inF, x, n, y);
    if (!Buffer.from(y.buffer).equals(Buffer.from(want.buffer))) mismatches++;
  }
  expect(await Promise.all(results)).toEqual([0, 0]);
  expect(mismatches).toBe(0);
  await Promise.all(workers.map((worker) => worker.terminate()));
});

test('setThreads changes the pool between calls without changing results', () => {
  const out = 256,
    inF = 1024,
    n = 17;
  const previous = native.threads();
  const w = quantize('q8_0', randomFloats(out * inF, 3)),
    x = randomFloats(n * inF, 4);
  const results = [1, 2, 3, 2, 1].map((t) => {
    native.setThreads(t);
    expect(native.threads()).toBe(t);
    const y = new Float32Array(n * out);
    native.matmul('q8_0', w, out, inF, x, n, y);
    return Buffer.from(y.buffer);
  });
  for (const r of results) expect(r.equals(results[0])).toBe(true);
  native.setThreads(previous);
});
