/**
 * A {@link HybridCache} in a file, to resume a conversation after its state left memory (a server's
 * snapshot spilled to disk, a chat saved with its state): safetensors, one tensor per state, the
 * attention layers' keys and values trimmed to their filled positions.
 */
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile, writeSafetensors, type WritableTensor } from '@graniteflow/core';
import { MambaCache } from '@graniteflow/ops-mamba';
import { HybridCache, type LayerCache } from './hybrid_cache';
import { KVCache } from './kv_cache';

const FORMAT = 'graniteflow-hybrid-cache';

/** A cache file that does not hold a state of this model. */
export class CacheFileError extends Error {
  override name = 'CacheFileError';
}

function writable(t: tf.Tensor): WritableTensor {
  return { dtype: 'F32', shape: t.shape, data: t.dataSync() as Float32Array };
}

/** Writes `cache` to `file` (whole or not at all: written under a temporary name, then renamed). */
export function saveCacheFile(cache: HybridCache, file: string): void {
  const tensors = new Map<string, WritableTensor>();
  const kinds: string[] = [];
  cache.layers.forEach((layer, i) => {
    if (layer instanceof MambaCache) {
      kinds.push('mamba');
      tensors.set(`layers.${i}.conv_state`, writable(layer.convState));
      tensors.set(`layers.${i}.ssm_state`, writable(layer.ssmState));
    } else {
      kinds.push('attention');
      if (layer.keys === null || layer.values === null) return;
      const filled = (s: tf.Tensor4D) => tf.slice(s, [0, 0, 0, 0], [s.shape[0], s.shape[1], layer.length, s.shape[3]]);
      const [k, v] = [filled(layer.keys), filled(layer.values)];
      tensors.set(`layers.${i}.keys`, writable(k));
      tensors.set(`layers.${i}.values`, writable(v));
      tf.dispose([k, v]);
    }
  });
  if (cache.mask) tensors.set('mask', writable(cache.mask));
  writeSafetensors(file, tensors, {
    metadata: {
      format: FORMAT,
      version: '1',
      batch: String(cache.batchSize),
      seq_length: String(cache.seqLength),
      layers: kinds.join(','),
    },
  });
}

/**
 * Reads a cache written by {@link saveCacheFile}; `layerTypes` (the model's `layerKinds`) must
 * match what it holds. Throws {@link CacheFileError} naming the file and the mismatch.
 */
export function loadCacheFile(file: string, layerTypes: readonly string[], options: { headroom?: number } = {}): HybridCache {
  const st = SafetensorsFile.open(file);
  try {
    const meta = st.metadata;
    if (meta.format !== FORMAT)
      throw new CacheFileError(`${file} is not a graniteflow cache file (its metadata has no format "${FORMAT}").`);
    const kinds = (meta.layers ?? '').split(',');
    if (kinds.join(',') !== layerTypes.join(',')) {
      throw new CacheFileError(`${file} holds the state of a model with layers ${kinds.join(',')}, not ${layerTypes.join(',')}.`);
    }
    const seqLength = Number(meta.seq_length);
    const batch = Number(meta.batch);
    const headroom = options.headroom ?? 64;
    const layers: LayerCache[] = kinds.map((kind, i) => {
      if (kind === 'mamba') return new MambaCache(st.readTensor(`layers.${i}.conv_state`), st.readTensor(`layers.${i}.ssm_state`));
      if (!st.has(`layers.${i}.keys`)) return new KVCache();
      const storage = (name: string) =>
        tf.tidy(() => {
          const filled = st.readTensor(name) as tf.Tensor4D;
          const [b, h, , d] = filled.shape;
          return tf.concat([filled, tf.zeros([b, h, headroom, d])], 2) as tf.Tensor4D;
        });
      const keys = storage(`layers.${i}.keys`);
      if (keys.shape[2] - headroom !== seqLength)
        throw new CacheFileError(`${file}: layer ${i} holds ${keys.shape[2] - headroom} positions, the cache ${seqLength}.`);
      return KVCache.fromStorage(keys, storage(`layers.${i}.values`), seqLength);
    });
    const mask = st.has('mask') ? (tf.keep(st.readTensor('mask')) as tf.Tensor2D) : null;
    return new HybridCache(layers, batch, seqLength, mask);
  } finally {
    st.close();
  }
}

/** Bytes a cache file takes on disk. */
export function cacheFileBytes(file: string): number {
  return fs.statSync(file).size;
}
