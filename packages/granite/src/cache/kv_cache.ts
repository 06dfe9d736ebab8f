import * as tf from '@tensorflow/tfjs-core';
import { unsharedFloat32Memory } from '@graniteflow/core';

/** Positions a cache holds at first: a decode step after a short prompt then appends in place. */
const MIN_CAPACITY = 64;

/** What {@link KVCache.append} returns: the whole storage and how much of it is filled. */
export interface CachedKeysValues {
  /** [B, nKV, capacity, hd]; positions [0, length) are filled. Owned by the cache. */
  keys: tf.Tensor4D;
  values: tf.Tensor4D;
  length: number;
}

/**
 * Keys and values of one attention layer in storage [B, nKV, capacity, hd]: each KV head's
 * positions contiguous, so that attention over a long cache streams each head from memory (the
 * projections' [B, T, nKV, hd] layout puts a head's rows a whole position apart, which a decode
 * step at 32K positions read at half the speed). New positions are written in place; when they do
 * not fit, the capacity doubles (or grows to what is needed) and the filled part moves once, so a
 * decode step costs O(1) copying, not O(S). NoPE layers store keys exactly as projected; RoPE
 * layers store them rotated.
 *
 * Views of the storage ({@link KVCache.keys}, what `append` returns, slices of those) are valid
 * until the next `append`, which may overwrite or replace it.
 */
export class KVCache {
  private keysTensor: tf.Tensor4D | null = null;
  private valuesTensor: tf.Tensor4D | null = null;
  private filled = 0;

  /**
   * @param plannedLength positions the caller expects to cache in all (prompt + new tokens): the
   * first allocation holds them, so the storage never grows (or over-allocates) within that length.
   */
  constructor(private readonly plannedLength = 0) {}

  /** Number of cached positions (S). */
  get length(): number {
    return this.filled;
  }

  /** Positions the storage holds before it must grow. */
  get capacity(): number {
    return this.keysTensor?.shape[2] ?? 0;
  }

  /** Key storage [B, nKV, capacity, hd] (positions past `length` are unused), or null when empty. */
  get keys(): tf.Tensor4D | null {
    return this.keysTensor;
  }

  /** Value storage, as {@link KVCache.keys}. */
  get values(): tf.Tensor4D | null {
    return this.valuesTensor;
  }

  /**
   * Appends this call's keys and values ([B, T, nKV, hd] each) after the cached ones and returns
   * the storage with its new length.
   */
  append(keys: tf.Tensor4D, values: tf.Tensor4D): CachedKeysValues {
    const [batch, time, kvHeads, hd] = keys.shape;
    if (!tf.util.arraysEqual(keys.shape, values.shape)) {
      throw new RangeError(`KVCache.append: keys [${keys.shape}] and values [${values.shape}] must have the same shape.`);
    }
    const stored = this.keysTensor?.shape;
    if (stored && (stored[0] !== batch || stored[1] !== kvHeads || stored[3] !== hd)) {
      throw new RangeError(
        `KVCache.append: the cache holds keys of ${stored[0]} sequences × ${stored[1]} heads × ${stored[3]}, got [${keys.shape}] ([B, T, nKV, hd]).`,
      );
    }
    const needed = this.filled + time;
    if (needed > this.capacity) {
      const capacity = needed <= this.plannedLength ? this.plannedLength : Math.max(needed, 2 * this.capacity, MIN_CAPACITY);
      this.grow(capacity, [batch, kvHeads, hd]);
    }
    this.keysTensor = this.write(this.keysTensor!, keys);
    this.valuesTensor = this.write(this.valuesTensor!, values);
    this.filled = needed;
    return { keys: this.keysTensor, values: this.valuesTensor, length: this.filled };
  }

  /** New storage of `capacity` positions holding the filled ones. */
  private grow(capacity: number, [batch, kvHeads, hd]: number[]): void {
    const move = (old: tf.Tensor4D | null): tf.Tensor4D => {
      const next = tf.keep(tf.zeros([batch, kvHeads, capacity, hd])) as tf.Tensor4D;
      if (old === null) return next;
      const filled = tf.slice(old, [0, 0, 0, 0], [batch, kvHeads, this.filled, hd]) as tf.Tensor4D;
      const result = this.writeAt(next, filled, 0, true);
      filled.dispose();
      old.dispose();
      return result;
    };
    this.keysTensor = move(this.keysTensor);
    this.valuesTensor = move(this.valuesTensor);
  }

  private write(storage: tf.Tensor4D, rows: tf.Tensor4D): tf.Tensor4D {
    return this.writeAt(storage, rows, this.filled, false);
  }

  /**
   * Copies rows into positions [at, at + T) of the storage: rows [B, T, nKV, hd] as projected, or
   * (`headsMajor`) [B, nKV, T, hd] as stored. In place on cpu, native and wasm; elsewhere by
   * building new storage (a copy of all of it).
   */
  private writeAt(storage: tf.Tensor4D, rows: tf.Tensor4D, at: number, headsMajor: boolean): tf.Tensor4D {
    const [batch, kvHeads, capacity, hd] = storage.shape;
    const time = rows.shape[headsMajor ? 2 : 1];
    const target = unsharedFloat32Memory(storage);
    if (target !== null) {
      // A reshape's rows share memory with their source, still float32 on this backend.
      const source = unsharedFloat32Memory(rows) ?? (rows.dataSync() as Float32Array);
      for (let b = 0; b < batch; b++)
        for (let h = 0; h < kvHeads; h++) {
          const to = ((b * kvHeads + h) * capacity + at) * hd;
          if (headsMajor) {
            const from = (b * kvHeads + h) * time * hd;
            target.set(source.subarray(from, from + time * hd), to);
          } else {
            for (let t = 0; t < time; t++) {
              const from = ((b * time + t) * kvHeads + h) * hd;
              target.set(source.subarray(from, from + hd), to + t * hd);
            }
          }
        }
      return storage;
    }
    const rebuilt = tf.tidy(() =>
      tf.concat(
        [
          tf.slice(storage, [0, 0, 0, 0], [batch, kvHeads, at, hd]),
          headsMajor ? rows : tf.transpose(rows, [0, 2, 1, 3]),
          tf.slice(storage, [0, 0, at + time, 0], [batch, kvHeads, capacity - at - time, hd]),
        ],
        2,
      ),
    ) as tf.Tensor4D;
    storage.dispose();
    return tf.keep(rebuilt);
  }

  /**
   * A cache over existing storage [B, nKV, capacity, hd] whose positions [0, length) are filled;
   * takes ownership of both tensors.
   */
  static fromStorage(keys: tf.Tensor4D, values: tf.Tensor4D, length: number, plannedLength = 0): KVCache {
    if (!tf.util.arraysEqual(keys.shape, values.shape) || length < 0 || length > keys.shape[2]) {
      throw new RangeError(
        `KVCache.fromStorage: keys [${keys.shape}] and values [${values.shape}] must have the same shape, holding ${length} positions.`,
      );
    }
    const cache = new KVCache(plannedLength);
    cache.keysTensor = tf.keep(keys);
    cache.valuesTensor = tf.keep(values);
    cache.filled = length;
    return cache;
  }

  /** An independent copy (its own storage of the same capacity). */
  clone(): KVCache {
    const copy = new KVCache(this.plannedLength);
    if (this.keysTensor && this.valuesTensor) {
      const own = (t: tf.Tensor4D) => tf.keep(tf.tensor(Float32Array.from(t.dataSync() as Float32Array), t.shape)) as tf.Tensor4D;
      copy.keysTensor = own(this.keysTensor);
      copy.valuesTensor = own(this.valuesTensor);
      copy.filled = this.filled;
    }
    return copy;
  }

  /** Bytes held: the whole storage of keys and values (float32), filled or not. */
  get byteSize(): number {
    return 4 * ((this.keysTensor?.size ?? 0) + (this.valuesTensor?.size ?? 0));
  }

  dispose(): void {
    this.keysTensor?.dispose();
    this.valuesTensor?.dispose();
    this.keysTensor = null;
    this.valuesTensor = null;
    this.filled = 0;
  }
}
