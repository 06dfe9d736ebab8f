/**
 * Caches of several sequences as one batch, and back: what continuous batching does when a
 * sequence joins the running batch (its prefilled state is stacked under the others) or leaves it
 * (the remaining rows are kept). Sequences of different lengths are left-padded in the attention
 * layers' keys and values and masked, as a left-padded batch prompt is; the Mamba layers' states
 * have no length and simply stack. Each copies the state once; decode steps in between append
 * in place.
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

function kvParts(cache: KVCache, what: string): { keys: tf.Tensor4D; values: tf.Tensor4D } {
  if (cache.keys === null || cache.values === null) throw new RangeError(`${what}: an attention layer's cache is empty; prefill every sequence first.`);
  return { keys: cache.keys, values: cache.values };
}

/** The filled positions [from, length) of storage [B, nKV, capacity, hd], rows `rows` (all when null). */
function filledRows(storage: tf.Tensor4D, rows: readonly number[] | null, from: number, length: number): tf.Tensor4D {
  const [batch, kvHeads, , hd] = storage.shape;
  const picked = rows === null ? storage : (tf.gather(storage, rows, 0) as tf.Tensor4D);
  return tf.slice(picked, [0, 0, from, 0], [rows === null ? batch : rows.length, kvHeads, length - from, hd]);
}

/**
 * One cache holding every sequence of `caches` (in order, each keeping its own rows): shorter
 * ones are left-padded to the longest and masked. The inputs are left as they were.
 */
export function stackCaches(caches: readonly HybridCache[], options: BatchRowsOptions = {}): HybridCache {
  if (caches.length === 0) throw new RangeError('stackCaches: no caches given.');
  const headroom = options.headroom ?? 64;
  const layerCount = caches[0].layers.length;
  if (caches.some((c) => c.layers.length !== layerCount)) throw new RangeError('stackCaches: the caches are of models with different layer counts.');
  const length = Math.max(...caches.map((c) => c.seqLength));
  if (caches.some((c) => c.seqLength === 0)) throw new RangeError('stackCaches: a cache holds no tokens; prefill every sequence first.');
  const batch = caches.reduce((n, c) => n + c.batchSize, 0);
  return tidyKept(() => {
    const layers: LayerCache[] = caches[0].layers.map((first, i) => {
      const parts = caches.map((c) => c.layers[i]);
      if (first instanceof MambaCache) {
        const mamba = parts as MambaCache[];
        return new MambaCache(tf.concat(mamba.map((m) => m.convState), 0), tf.concat(mamba.map((m) => m.ssmState), 0));
      }
      const padded = (kv: 'keys' | 'values') =>
        tf.concat(
          parts.map((part, j) => {
            const storage = kvParts(part as KVCache, 'stackCaches')[kv];
            const [b, kvHeads, , hd] = storage.shape;
            const filled = (part as KVCache).length;
            if (filled !== caches[j].seqLength) throw new RangeError(`stackCaches: layer ${i} holds ${filled} positions, its cache ${caches[j].seqLength}.`);
            return tf.concat([tf.zeros([b, kvHeads, length - filled, hd]), filledRows(storage, null, 0, filled), tf.zeros([b, kvHeads, headroom, hd])], 2);
          }),
          0,
        ) as tf.Tensor4D;
      return KVCache.fromStorage(padded('keys'), padded('values'), length);
    });
    const needsMask = caches.some((c) => c.mask !== null || c.seqLength !== length);
    const mask = needsMask
      ? (tf.concat(caches.map((c) => tf.concat([tf.zeros([c.batchSize, length - c.seqLength]), c.mask ?? tf.ones([c.batchSize, c.seqLength])], 1)), 0) as tf.Tensor2D)
      : null;
    return new HybridCache(layers, batch, length, mask === null ? null : tf.keep(mask));
  });
}

/** Runs `build` in a tidy scope: what it keeps (the new cache's tensors) survives, its intermediates do not. */
function tidyKept(build: () => HybridCache): HybridCache {
  let result: HybridCache | undefined;
  tf.tidy(() => {
    result = build();
  });
  return result!;
}

/**
 * A new cache of the rows `rows` of `cache` (which is left as it was), without the leading
 * positions that are padding in every kept row: a sequence leaving the batch takes its own state
 * with `selectRows(batch, [row])`, and the others go on with the rest.
 */
export function selectRows(cache: HybridCache, rows: readonly number[], options: BatchRowsOptions = {}): HybridCache {
  if (rows.length === 0) throw new RangeError('selectRows: no rows given.');
  for (const r of rows) {
    if (!Number.isInteger(r) || r < 0 || r >= cache.batchSize) throw new RangeError(`selectRows: row ${r} is not in a batch of ${cache.batchSize}.`);
  }
  const headroom = options.headroom ?? 64;
  const maskRows = cache.mask === null ? null : (tf.tidy(() => tf.gather(cache.mask!, [...rows], 0).arraySync()) as number[][]);
  // Columns before the first real token of any kept row are padding for all of them.
  const from = maskRows === null ? 0 : Math.min(...maskRows.map((m) => Math.max(0, m.indexOf(1))));
  const length = cache.seqLength - from;
  return tidyKept(() => {
    const layers: LayerCache[] = cache.layers.map((layer) => {
      if (layer instanceof MambaCache) return new MambaCache(tf.gather(layer.convState, [...rows], 0), tf.gather(layer.ssmState, [...rows], 0));
      const { keys, values } = kvParts(layer, 'selectRows');
      const stored = (storage: tf.Tensor4D) => {
        const kept = filledRows(storage, rows, from, cache.seqLength);
        const [b, kvHeads, , hd] = kept.shape;
        return tf.concat([kept, tf.zeros([b, kvHeads, headroom, hd])], 2) as tf.Tensor4D;
      };
      return KVCache.fromStorage(stored(keys), stored(values), length);
    });
    const kept = maskRows?.map((m) => m.slice(from));
    const mask = kept && kept.some((m) => m.includes(0)) ? (tf.tensor2d(kept, [rows.length, length]) as tf.Tensor2D) : null;
    return new HybridCache(layers, rows.length, length, mask === null ? null : tf.keep(mask));
  });
}
