import * as tf from '@tensorflow/tfjs-core';

/** What writing into the wasm backend's memory needs (`BackendWasm`). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

/**
 * A float32 tensor whose values `write` puts straight into backend memory: on wasm into the heap
 * in place (no JavaScript copy, no second copy in the heap), elsewhere into a fresh array handed to
 * the backend. For loading large weights, where every copy of a gigabyte costs seconds.
 * `write` must not keep the array: a wasm heap view dies when the heap grows.
 */
export function tensorFromWriter(shape: number[], write: (out: Float32Array) => void): tf.Tensor {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackendLike;
    const info = backend.makeOutput(shape, 'float32');
    try {
      write(backend.typedArrayFromHeap(info));
    } catch (err) {
      tf.backend().disposeData(info.dataId);
      throw err;
    }
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  write(values);
  return tf.tensor(values, shape, 'float32');
}
