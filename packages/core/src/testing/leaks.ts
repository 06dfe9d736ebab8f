import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `fn` (sync or async) and throws if the number of live tensors afterwards differs from
 * before. Returns what `fn` returned.
 */
export async function expectNoTensorLeak<T>(fn: () => T | Promise<T>, label = 'operation'): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new Error(`${label} leaked ${after - before} tensor(s): ${before} live before, ${after} after`);
  }
  return result;
}
