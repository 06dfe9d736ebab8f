import * as tf from '@tensorflow/tfjs-core';

/** What is needed of the cpu (and native) backend's storage. */
interface CpuStorageLike {
  data: { get(dataId: object): { values?: unknown; refCount: number } | undefined };
}

/** What is needed of the wasm backend's storage. */
interface WasmStorageLike {
  dataIdMap: { get(dataId: object): { refCount: number } | undefined };
  typedArrayFromHeap(info: tf.TensorInfo): unknown;
}

/**
 * A live view of a float32 tensor's memory on the cpu, native and wasm backends, for a buffer its
 * owner overwrites in place (a KV cache appending positions): null where the tensor lives on
 * another backend, is not float32, or shares its memory with another tensor (a reshape or clone
 * of it), since writing would then change that tensor too.
 *
 * Use the view at once: on wasm the next allocation may grow the heap and detach it.
 */
export function unsharedFloat32Memory(tensor: tf.Tensor): Float32Array | null {
  if (tensor.dtype !== 'float32' || tensor.isDisposed) return null;
  const backend = tf.engine().findBackend(tf.getBackend()) as unknown;
  const info = { dataId: tensor.dataId, shape: tensor.shape, dtype: tensor.dtype };
  const cpu = backend as Partial<CpuStorageLike>;
  if (cpu.data && typeof cpu.data.get === 'function' && !('dataIdMap' in (backend as object))) {
    const entry = cpu.data.get(tensor.dataId);
    return entry && entry.refCount === 1 && entry.values instanceof Float32Array ? entry.values : null;
  }
  const wasm = backend as Partial<WasmStorageLike>;
  if (wasm.dataIdMap && typeof wasm.typedArrayFromHeap === 'function') {
    const entry = wasm.dataIdMap.get(tensor.dataId);
    if (entry?.refCount !== 1) return null;
    const view = wasm.typedArrayFromHeap(info);
    return view instanceof Float32Array ? view : null;
  }
  return null;
}
