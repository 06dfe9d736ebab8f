import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, initBackend, pathEntryExists, type BackendName } from '@graniteflow/core';
import { GraniteModel } from '../granite_model';
import { GraniteTokenizer } from '../tokenizer/tokenizer';
import { resolveModelFolder, type DownloadProgress } from '../hub';
import { assertFitsInMemory, estimateMemory } from './memory';
import { loadWeights, type WeightsProgress } from './load_weights';
import { readGenerationConfig } from './generation_config';
import { readModelConfig } from './model_files';

/** Progress of {@link fromPretrained}: file downloads (hub only), then weights copied into the model. */
export type LoadProgress = ({ phase: 'download' } & DownloadProgress) | WeightsProgress;

/** Options of {@link fromPretrained}. */
export interface FromPretrainedOptions {
  /** Backend to initialise (default: the active one, else `GRANITEFLOW_BACKEND`, else wasm). */
  backend?: BackendName | string;
  /** Hub revision: branch, tag or commit (default `main`). */
  revision?: string;
  /** Hugging Face cache directory (default `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`). */
  cacheDir?: string;
  /** Hub endpoint (default `HF_ENDPOINT` or https://huggingface.co). */
  endpoint?: string;
  /** Hub access token (default `HF_TOKEN`). */
  token?: string;
  /** Use only the local cache. */
  offline?: boolean;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /** Tokens of context the memory check budgets KV cache for (default 4096). */
  contextLength?: number;
  /** Sequences the memory check budgets state for (default 1). */
  batchSize?: number;
  /** Load even when the memory estimate says it will not fit. */
  skipMemoryCheck?: boolean;
}

async function chooseBackend(requested: string | undefined): Promise<string> {
  if (requested !== undefined) return initBackend(requested);
  const active = tf.engine().backendName;
  return active ? active : initBackend();
}

/**
 * Loads a Granite 4.0 model from a local folder or a Hugging Face hub repo id (downloaded into the
 * standard HF cache, reusing what is already there). Checks memory before reading any weight and
 * refuses with the reason and a fix when the model cannot fit.
 *
 * @example
 * ```ts
 * const granite = await fromPretrained('ibm-granite/granite-4.0-h-micro', { onProgress: console.log });
 * const text = await granite.complete('The capital of France is', { maxNewTokens: 8 });
 * granite.dispose();
 * ```
 */
export async function fromPretrained(pathOrRepoId: string, options: FromPretrainedOptions = {}): Promise<GraniteModel> {
  const backend = await chooseBackend(options.backend);
  const folder = await resolveModelFolder(pathOrRepoId, {
    revision: options.revision,
    cacheDir: options.cacheDir,
    endpoint: options.endpoint,
    token: options.token,
    offline: options.offline,
    signal: options.signal,
    onProgress: options.onProgress && ((p: DownloadProgress) => options.onProgress!({ phase: 'download', ...p })),
  });
  // Sizes are bounded when the config is parsed and the estimate is arithmetic: a config too big
  // for the machine is refused before anything is allocated from it.
  const { config, impl } = readModelConfig(folder);
  const estimate = estimateMemory(config, { contextLength: options.contextLength, batchSize: options.batchSize });
  if (!options.skipMemoryCheck) assertFitsInMemory(estimate, backend);

  // Before the tokenizer, which reads generation_config.json too: a broken one is reported as itself.
  const generationConfig = readGenerationConfig(folder);
  const tokenizer = pathEntryExists(path.join(folder, 'tokenizer.json')) ? await GraniteTokenizer.fromFolder(folder) : null;
  const checkpoint = Checkpoint.open(folder);
  const model = impl.createModel(config);
  try {
    const converted = impl.convertWeights(new Map(checkpoint.names().map((k) => [k, k])), config);
    loadWeights(model, checkpoint, converted, { onProgress: options.onProgress, signal: options.signal });
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    checkpoint.close();
  }
  return new GraniteModel(model, tokenizer, folder, generationConfig, backend);
}
