import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, initBackend, type BackendName } from '@graniteflow/core';
import { GraniteModel } from '../granite_model';
import { modelTypeModule } from '../models';
import { GraniteTokenizer } from '../tokenizer/tokenizer';
import { resolveModelFolder, type DownloadProgress } from '../hub';
import { assertFitsInMemory, estimateMemory } from './memory';
import { loadWeights, type WeightsProgress } from './load_weights';
import { readGenerationConfig } from './generation_config';

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

function readConfigJson(folder: string): unknown {
  const file = path.join(folder, 'config.json');
  if (!fs.existsSync(file)) {
    throw new Error(`${folder} has no config.json: is it a Hugging Face model folder?`);
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
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
  const configFile = path.join(folder, 'config.json');
  const raw = readConfigJson(folder);
  const impl = modelTypeModule((raw as { model_type?: unknown } | null)?.model_type, configFile);
  const config = impl.parseConfig(raw, configFile);
  const estimate = estimateMemory(config, { contextLength: options.contextLength, batchSize: options.batchSize });
  if (!options.skipMemoryCheck) assertFitsInMemory(estimate, backend);

  const tokenizer = fs.existsSync(path.join(folder, 'tokenizer.json')) ? await GraniteTokenizer.fromFolder(folder) : null;
  const generationConfig = readGenerationConfig(folder);
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
