import * as tf from '@tensorflow/tfjs-core';
import { packedByteLength, type PackedFormat, isPackedFormat } from './formats';
import { convertLayout, interleavesHere, rowOrderBytes } from './interleaved_layout';
import { dequantizeRowsInto, quantizeRowsInto } from './quantize';

/** What writing into the wasm backend's memory needs (`BackendWasm`). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'int32'): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Int32Array;
}

/** int32 words needed to hold `bytes` bytes. */
function wordsFor(bytes: number): number {
  return Math.ceil(bytes / 4);
}

/**
 * An int32 tensor of `words` words whose bytes `write` fills in backend memory: in the wasm heap
 * in place, elsewhere in a fresh array handed to the backend without a copy.
 */
function storageFromWriter(words: number, write: (bytes: Uint8Array) => void): tf.Tensor {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackendLike;
    const info = backend.makeOutput([words], 'int32');
    try {
      const heap = backend.typedArrayFromHeap(info);
      const bytes = new Uint8Array(heap.buffer, heap.byteOffset, heap.byteLength);
      bytes.fill(0, Math.max(0, bytes.length - 4)); // the padding word: heap memory is not zeroed
      write(bytes);
    } catch (err) {
      tf.backend().disposeData(info.dataId);
      throw err;
    }
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  const values = new Int32Array(words);
  write(new Uint8Array(values.buffer));
  return tf.tensor1d(values, 'int32');
}

/** Options of {@link PackedTensor.fromBytes}. */
export interface PackedFromBytesOptions {
  /**
   * The bytes may be regrouped in place (they become the interleaved layout where the backend
   * uses it; e.g. a copy-on-write mapping of a checkpoint). Default false: bytes used in place are
   * left as they are.
   */
  mayModify?: boolean;
  /** The layout the bytes are in: row order (default, as GGUF and packed checkpoints store them)
   * or already interleaved (by an earlier `mayModify` use of the same bytes). */
  layout?: 'rows' | 'interleaved';
}

/**
 * A weight held packed (see {@link PackedFormat}) outside tfjs's float32 world. Its bytes live in an
 * int32 tensor of the active backend, so they sit where the backend's kernels can read them in place
 * (the wasm heap on `wasm`; ordinary or memory-mapped memory on `cpu` and `native`), and are
 * disposed like any tensor. `shape` is the checkpoint shape; its last dimension is the packed row.
 *
 * On the `native` backend a 2-D q8_0 / q4_0 weight is held `interleaved` (per 16 rows, the layout
 * its avx512 matmul reads fastest; see the native README): {@link PackedTensor.readBytes} still
 * gives row order, and the kernels take the layout from the weight.
 */
export class PackedTensor {
  private storage: tf.Tensor | null;

  private constructor(
    readonly format: PackedFormat,
    readonly shape: readonly number[],
    storage: tf.Tensor,
    /** The bytes are in the interleaved layout (else row order, as GGUF stores them). */
    readonly interleaved: boolean,
  ) {
    this.storage = storage;
  }

  /** Regroups freshly written bytes when this backend holds the weight interleaved. */
  private static layOut(format: PackedFormat, shape: readonly number[], bytes: Uint8Array): boolean {
    if (!interleavesHere(format, shape)) return false;
    convertLayout(format, bytes, shape[0], shape[1], true);
    return true;
  }

  private static check(format: PackedFormat, shape: readonly number[]): number {
    if (!isPackedFormat(format)) throw new TypeError(`Unknown packed format "${String(format)}" (expected bf16, q8_0 or q4_0).`);
    if (shape.length < 1 || shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new RangeError(`A packed weight needs positive integer dimensions, got [${shape}].`);
    }
    return packedByteLength(format, shape);
  }

  /** Packs float32 values given in `shape` (row-major) into `format`. */
  static fromFloats(format: PackedFormat, shape: readonly number[], values: Float32Array): PackedTensor {
    const byteLength = PackedTensor.check(format, shape);
    const cols = shape[shape.length - 1];
    const rows = values.length / cols;
    if (values.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new RangeError(`PackedTensor.fromFloats: [${shape}] needs ${shape.reduce((a, b) => a * b, 1)} values, got ${values.length}.`);
    }
    let interleaved = false;
    const storage = storageFromWriter(wordsFor(byteLength), (bytes) => {
      quantizeRowsInto(format, values, rows, cols, bytes);
      interleaved = PackedTensor.layOut(format, shape, bytes.subarray(0, byteLength));
    });
    return new PackedTensor(format, shape, tf.keep(storage), interleaved);
  }

  /** Packs the values of a float32 tensor (read back from its backend). */
  static fromTensor(format: PackedFormat, t: tf.Tensor): PackedTensor {
    return PackedTensor.fromFloats(format, t.shape, t.dataSync() as Float32Array);
  }

  /**
   * A packed weight whose bytes `write` puts straight into backend memory (for loading: a packed
   * checkpoint's bytes, or rows quantized while a float checkpoint streams in). `write` receives
   * exactly {@link PackedTensor.byteLength} bytes to fill (their prior content is unspecified) and
   * must not keep the array.
   */
  static fromWriter(format: PackedFormat, shape: readonly number[], write: (bytes: Uint8Array) => void): PackedTensor {
    const byteLength = PackedTensor.check(format, shape);
    let interleaved = false;
    const storage = storageFromWriter(wordsFor(byteLength), (bytes) => {
      write(bytes.subarray(0, byteLength));
      interleaved = PackedTensor.layOut(format, shape, bytes.subarray(0, byteLength));
    });
    return new PackedTensor(format, shape, tf.keep(storage), interleaved);
  }

  /**
   * A packed weight over bytes the caller already holds (e.g. a memory-mapped file). On backends
   * whose tensors live in JavaScript memory (`cpu`, `native`) the bytes are used in place when
   * 4-byte aligned: they must then stay unchanged for the tensor's lifetime (and are regrouped in
   * place only with `mayModify`). Elsewhere they are copied.
   */
  static fromBytes(format: PackedFormat, shape: readonly number[], bytes: Uint8Array, options: PackedFromBytesOptions = {}): PackedTensor {
    const byteLength = PackedTensor.check(format, shape);
    if (bytes.length !== byteLength) {
      throw new RangeError(`A ${format} weight of shape [${shape}] is ${byteLength} bytes, got ${bytes.length}.`);
    }
    const given = options.layout ?? 'rows';
    if (given === 'interleaved' && (shape.length !== 2 || (format !== 'q8_0' && format !== 'q4_0'))) {
      throw new RangeError(`Only 2-D q8_0 / q4_0 weights have an interleaved layout, got ${format} [${shape}].`);
    }
    const inPlace = tf.getBackend() !== 'wasm' && bytes.byteOffset % 4 === 0 && byteLength % 4 === 0;
    const keepsLayout = given === 'rows' || interleavesHere(format, shape);
    if (!inPlace || !keepsLayout) {
      const rows = given === 'interleaved' ? rowOrderBytes(format, bytes, shape[0], shape[1], true) : bytes;
      return PackedTensor.fromWriter(format, shape, (out) => out.set(rows));
    }
    const interleaved = given === 'interleaved' || (options.mayModify === true && PackedTensor.layOut(format, shape, bytes));
    const storage = tf.tensor1d(new Int32Array(bytes.buffer, bytes.byteOffset, byteLength / 4), 'int32');
    return new PackedTensor(format, shape, tf.keep(storage), interleaved);
  }

  /** The int32 tensor holding the packed bytes (padded to whole words). */
  get bytes(): tf.Tensor {
    if (this.storage === null) throw new Error(`This ${this.format} weight [${this.shape}] has been disposed.`);
    return this.storage;
  }

  /** Weights per row (the last dimension). */
  get cols(): number {
    return this.shape[this.shape.length - 1];
  }

  /** Rows (the product of every dimension but the last). */
  get rows(): number {
    return this.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  }

  /** Bytes of packed data (without the padding to whole words). */
  get byteLength(): number {
    return packedByteLength(this.format, this.shape);
  }

  /** The packed bytes in row order (GGUF's), read back from the backend (a copy on wasm, or when
   * the weight is held interleaved). */
  readBytes(): Uint8Array {
    const words = this.bytes.dataSync() as Int32Array;
    const bytes = new Uint8Array(words.buffer, words.byteOffset, this.byteLength);
    return rowOrderBytes(this.format, bytes, this.rows, this.cols, this.interleaved);
  }

  /** The weight unpacked to a float32 tensor of {@link PackedTensor.shape} (the caller owns it). */
  dequantize(): tf.Tensor {
    const out = new Float32Array(this.rows * this.cols);
    dequantizeRowsInto(this.format, this.readBytes(), this.cols, 0, this.rows, out);
    return tf.tensor(out, this.shape as number[], 'float32');
  }

  get isDisposed(): boolean {
    return this.storage === null;
  }

  dispose(): void {
    this.storage?.dispose();
    this.storage = null;
  }
}
