/**
 * Caches of several sequences as one batch, and back: what continuous batching does when a
 * sequence joins the running batch (its prefilled state is stacked under the others) or leaves it
 * (the remaining rows are kept). Sequences of different lengths are left-padded in the attention
 * layers' keys and values and masked, as a left-padded batch prompt is; the Mamba layers' states
 * have no length and simply stack. Each copies the state once, row by row with typed-array copies
 * (tfjs' gather and concat run in JavaScript on the cpu and native backends, 100× slower on an
 * H-Micro batch); decode steps in between append in place.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MambaCache } from '@graniteflow/ops-mamba';
import { HybridCache, type LayerCache } from './hybrid_cache';
import { KVCache } from './kv_cache';

/** Options of {@link stackCaches} and {@link selectRows}. */
export interface BatchRowsOptions {
  /** Positions of free capacity each attention layer's storage gets past the filled ones (default 64), so that decode steps append in place. */
  headroom?: number;
}

/** One part of a batch being built: a cache's tensor, which of its rows, and where they go. */
interface RowSource {
  values: Float32Array;
  shape: readonly number[];
  rows: readonly number[];
}

function source(t: tf.Tensor, rows?: readonly number[]): RowSource {
  return { values: t.dataSync() as Float32Array, shape: t.shape, rows: rows ?? Array.from({ length: t.shape[0] }, (_, i) => i) };
}

/** The chosen rows of every source, one after another, as one tensor (rows of any shape). */
function joinRows(sources: readonly RowSource[]): tf.Tensor {
  const rowSize = sources[0].shape.slice(1).reduce((a, b) => a * b, 1);
  const total = sources.reduce((n, s) => n + s.rows.length, 0);
  const out = new Float32Array(total * rowSize);
  let at = 0;
  for (const s of sources) {
    for (const r of s.rows) out.set(s.values.subarray(r * rowSize, (r + 1) * rowSize), at++ * rowSize);
  }
  return tf.tensor(out, [total, ...sources[0].shape.slice(1)]);
}

/**
 * Key or value storage [N, nKV, capacity, hd] from parts: of each source's chosen rows, positions
 * [from, to) of every head, written `padFront` positions in (the rest zeros).
 */
function joinKv(parts: readonly (RowSource & { from: number; to: number; padFront: number })[], capacity: number): tf.Tensor4D {
  const [, kvHeads, , hd] = parts[0].shape;
  const total = parts.reduce((n, p) => n + p.rows.length, 0);
  const out = new Float32Array(total * kvHeads * capacity * hd);
  let row = 0;
  for (const p of parts) {
    const stored = p.shape[2];
    for (const r of p.rows) {
      for (let h = 0; h < kvHeads; h++) {
        const from = ((r * kvHeads + h) * stored + p.from) * hd;
        out.set(p.values.subarray(from, from + (p.to - p.from) * hd), ((row * kvHeads + h) * capacity + p.padFront) * hd);
      }
      row++;
    }
  }
  return tf.tensor4d(out, [total, kvHeads, capacity, hd]);
}

function kvStorage(cache: KVCache, what: string): { keys: tf.Tensor4D; values: tf.Tensor4D } {
  if (cache.keys === null || cache.values === null)
    throw new RangeError(`${what}: an attention layer's cache is empty; prefill every sequence first.`);
  return { keys: cache.keys, values: cache.values };
}

/**
 * One cache holding every sequence of `caches` (in order, each keeping its own rows): shorter
 * ones are left-padded to the longest and masked. The inputs are left as they were.
 */
export function stackCaches(caches: readonly HybridCache[], options: BatchRowsOptions = {}): HybridCache {
  if (caches.length === 0) throw new RangeError('stackCaches: no caches given.');
  const headroom = options.headroom ?? 64;
  const layerCount = caches[0].layers.length;
  if (caches.some((c) => c.layers.length !== layerCount))
    throw new RangeError('stackCaches: the caches are of models with different layer counts.');
  if (caches.some((c) => c.seqLength === 0)) throw new RangeError('stackCaches: a cache holds no tokens; prefill every sequence first.');
  const length = Math.max(...caches.map((c) => c.seqLength));
  const batch = caches.reduce((n, c) => n + c.batchSize, 0);
  const layers: LayerCache[] = caches[0].layers.map((first, i) => {
    const parts = caches.map((c) => c.layers[i]);
    if (first instanceof MambaCache) {
      const mamba = parts as MambaCache[];
      return new MambaCache(joinRows(mamba.map((m) => source(m.convState))), joinRows(mamba.map((m) => source(m.ssmState))));
    }
    const kv = (which: 'keys' | 'values') =>
      joinKv(
        parts.map((part, j) => {
          const filled = (part as KVCache).length;
          if (filled !== caches[j].seqLength)
            throw new RangeError(`stackCaches: layer ${i} holds ${filled} positions, its cache ${caches[j].seqLength}.`);
          return { ...source(kvStorage(part as KVCache, 'stackCaches')[which]), from: 0, to: filled, padFront: length - filled };
        }),
        length + headroom,
      );
    return KVCache.fromStorage(kv('keys'), kv('values'), length);
  });
  const needsMask = caches.some((c) => c.mask !== null || c.seqLength !== length);
  let mask: tf.Tensor2D | null = null;
  if (needsMask) {
    const values = new Float32Array(batch * length);
    let row = 0;
    for (const c of caches) {
      const own = c.mask?.dataSync() as Float32Array | undefined;
      for (let b = 0; b < c.batchSize; b++, row++) {
        const at = row * length + (length - c.seqLength);
        if (own) values.set(own.subarray(b * c.seqLength, (b + 1) * c.seqLength), at);
        else values.fill(1, at, at + c.seqLength);
      }
    }
    mask = tf.tensor2d(values, [batch, length]);
  }
  return new HybridCache(layers, batch, length, mask === null ? null : tf.keep(mask));
}

/**
 * A new cache of the rows `rows` of `cache` (which is left as it was), without the leading
 * positions that are padding in every kept row: a sequence leaving the batch takes its own state
 * with `selectRows(batch, [row])`, and the others go on with the rest.
 */
export function selectRows(cache: HybridCache, rows: readonly number[], options: BatchRowsOptions = {}): HybridCache {
  if (rows.length === 0) throw new RangeError('selectRows: no rows given.');
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= cache.batchSize)
      throw new RangeError(`selectRows: row ${r} is not in a batch of ${cache.batchSize}.`);
  }
  const headroom = options.headroom ?? 64;
  const seq = cache.seqLength;
  const maskValues = cache.mask?.dataSync() as Float32Array | undefined;
  // Columns before the first real token of any kept row are padding for all of them.
  let from = 0;
  if (maskValues) {
    from = seq;
    for (const r of rows) {
      let first = 0;
      while (first < seq && maskValues[r * seq + first] === 0) first++;
      from = Math.min(from, first);
    }
  }
  const length = seq - from;
  const layers: LayerCache[] = cache.layers.map((layer) => {
    if (layer instanceof MambaCache)
      return new MambaCache(joinRows([source(layer.convState, rows)]), joinRows([source(layer.ssmState, rows)]));
    const { keys, values } = kvStorage(layer, 'selectRows');
    const kv = (storage: tf.Tensor4D) => joinKv([{ ...source(storage, rows), from, to: seq, padFront: 0 }], length + headroom);
    return KVCache.fromStorage(kv(keys), kv(values), length);
  });
  let mask: tf.Tensor2D | null = null;
  if (maskValues) {
    const kept = new Float32Array(rows.length * length);
    rows.forEach((r, i) => kept.set(maskValues.subarray(r * seq + from, (r + 1) * seq), i * length));
    if (kept.includes(0)) mask = tf.tensor2d(kept, [rows.length, length]);
  }
  return new HybridCache(layers, rows.length, length, mask === null ? null : tf.keep(mask));
}
