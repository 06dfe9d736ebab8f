import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, initBackend, pathEntryExists, type BackendName, type WeightDtype } from '@graniteflow/core';
import { GraniteModel } from '../granite_model';
import { GraniteTokenizer } from '../tokenizer/tokenizer';
import { resolveModelFolder, type DownloadProgress } from '../hub';
import { assertFitsInMemory, estimateMemory } from './memory';
import { loadWeights, type WeightsProgress } from './load_weights';
import { checkWeightDtype, planWeightDtypes, type WeightDtypeOverrides } from './weight_policy';
import { readGenerationConfig } from './generation_config';
import { readModelConfig } from './model_files';

/** Progress of {@link fromPretrained}: file downloads (hub only), then weights copied into the model. */
export type LoadProgress = ({ phase: 'download' } & DownloadProgress) | WeightsProgress;

/**
 * Something worth telling about a load that is not an error: `memory` when the model fits the
 * machine but not the memory free right now; `dtype` for each weight held float32 although the
 * dtype policy or an override asked for a packed dtype (its rows are not whole blocks).
 */
export interface LoadNote {
  kind: 'memory' | 'dtype';
  message: string;
}

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
  /**
   * How to hold the matrix weights (default `'f32'`): `'bf16'`, `'q8_0'` or `'q4_0'` quantize a
   * float checkpoint while it streams in, tensor by tensor, a few rows at a time (the float32
   * model is never held). Router, norms, A_log, D, dt_bias and conv1d stay float32 (see
   * `PACKED_WEIGHTS` for the policy and why).
   */
  dtype?: WeightDtype;
  /** Per-weight exceptions to the policy, by name or glob (`'*.mamba.in_proj.weight'`), or a function. */
  dtypeOverrides?: WeightDtypeOverrides;
  /** Receives the {@link LoadNote}s of the load (none are printed). */
  onNote?: (note: LoadNote) => void;
}

async function chooseBackend(requested: string | undefined): Promise<string> {
  if (requested !== undefined) return initBackend(requested);
  const active = tf.engine().backendName;
  return active ? active : initBackend();
}

/**
 * Loads a Granite 4.0 model from a local folder or a Hugging Face hub repo id (downloaded into the
 * standard HF cache, reusing what is already there). Checks memory before reading any weight and
 * refuses with the reason and a fix when the model cannot fit the backend at the chosen dtype.
 *
 * @example
 * ```ts
 * const granite = await fromPretrained('ibm-granite/granite-4.0-h-micro', { onProgress: console.log });
 * const text = await granite.complete('The capital of France is', { maxNewTokens: 8 });
 * granite.dispose();
 *
 * // 4-bit weights, quantized while loading (≈1.8 GB instead of 12.8 GB for H-Micro):
 * const small = await fromPretrained('ibm-granite/granite-4.0-h-micro', { dtype: 'q4_0' });
 * ```
 */
export async function fromPretrained(pathOrRepoId: string, options: FromPretrainedOptions = {}): Promise<GraniteModel> {
  const policy = { dtype: checkWeightDtype(options.dtype ?? 'f32'), dtypeOverrides: options.dtypeOverrides };
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
  const estimate = estimateMemory(config, { contextLength: options.contextLength, batchSize: options.batchSize, ...policy });
  if (!options.skipMemoryCheck) {
    const warning = assertFitsInMemory(estimate, backend);
    if (warning !== undefined) options.onNote?.({ kind: 'memory', message: warning });
  }

  // Before the tokenizer, which reads generation_config.json too: a broken one is reported as itself.
  const generationConfig = readGenerationConfig(folder);
  const tokenizer = pathEntryExists(path.join(folder, 'tokenizer.json')) ? await GraniteTokenizer.fromFolder(folder) : null;
  const checkpoint = Checkpoint.open(folder);
  const model = impl.createModel(config);
  try {
    const converted = impl.convertWeights(new Map(checkpoint.names().map((k) => [k, k])), config);
    const plan = planWeightDtypes([...model.namedParameters()].map(([name, p]) => [name, p.shape] as const), policy);
    for (const message of plan.notes) options.onNote?.({ kind: 'dtype', message });
    loadWeights(model, checkpoint, converted, { onProgress: options.onProgress, signal: options.signal, dtypes: plan.dtypes });
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    checkpoint.close();
  }
  return new GraniteModel(model, tokenizer, folder, generationConfig, backend);
}
