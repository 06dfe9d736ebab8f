import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpoint,
  initBackend,
  MappedCheckpoint,
  nativeAddon,
  openMappedCheckpoint,
  pathEntryExists,
  type BackendName,
  type WeightDtype,
} from '@graniteflow/core';
import { GraniteModel, type WeightsSource } from '../granite_model';
import { GraniteTokenizer } from '../tokenizer/tokenizer';
import { resolveModelFolder, type DownloadProgress } from '../hub';
import { assertFitsInMemory, estimateMemory } from './memory';
import { loadWeights, type WeightsProgress } from './load_weights';
import { checkWeightDtype, planWeightDtypes, type WeightDtypeOverrides, type WeightPolicyOptions } from './weight_policy';
import { readGenerationConfig } from './generation_config';
import { readModelConfig } from './model_files';

/** Progress of {@link fromPretrained}: file downloads (hub only), then weights copied into the model. */
export type LoadProgress = ({ phase: 'download' } & DownloadProgress) | WeightsProgress;

/**
 * Something worth telling about a load that is not an error: `memory` when the model fits the
 * machine but not the memory free right now; `dtype` for each weight held float32 although the
 * dtype policy or an override asked for a packed dtype (its rows are not whole blocks), and for
 * the weights of a packed checkpoint repacked into the `dtype` asked for.
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
  /** Prompt tokens per prefill chunk the memory check budgets activations for (default 512). */
  prefillChunk?: number;
  /** Load even when the memory estimate says it will not fit. */
  skipMemoryCheck?: boolean;
  /**
   * How to hold the matrix weights (default `'f32'`): `'bf16'`, `'q8_0'` or `'q4_0'` quantize a
   * float checkpoint while it streams in, tensor by tensor, a few rows at a time (the float32
   * model is never held). Router, norms, A_log, D, dt_bias and conv1d stay float32 (see
   * `PACKED_WEIGHTS` for the policy and why).
   *
   * A packed checkpoint (the output of `graniteflow quantize`) is held as stored when `dtype` is
   * absent or its format. Another `dtype` repacks its weights (dequantized, then quantized again,
   * with a `dtype` note): the values are no more precise than the checkpoint's.
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
  if (options.dtype !== undefined) checkWeightDtype(options.dtype);
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
  const { config, family } = readModelConfig(folder);
  const checkMemory = (policy: WeightPolicyOptions, mapped: boolean) => {
    if (options.skipMemoryCheck) return;
    const estimate = estimateMemory(config, {
      contextLength: options.contextLength,
      batchSize: options.batchSize,
      prefillChunk: options.prefillChunk,
      mapped,
      ...policy,
    });
    const warning = assertFitsInMemory(estimate, backend);
    if (warning !== undefined) options.onNote?.({ kind: 'memory', message: warning });
  };
  // Headers only: whether the folder is packed, and in which formats, decides the plan and the estimate.
  let checkpoint: Checkpoint;
  try {
    checkpoint = Checkpoint.open(folder);
  } catch (err) {
    // No readable weights: a config too large for the machine is still the first thing to say.
    checkMemory({ dtype: options.dtype ?? 'f32', dtypeOverrides: options.dtypeOverrides }, false);
    throw err;
  }
  let source: Checkpoint | MappedCheckpoint = checkpoint;
  try {
    const converted = family.convertWeights(new Map(checkpoint.names().map((k) => [k, k])), config);
    const stored = storedDtypes(checkpoint, converted);
    const packedCheckpoint = stored !== undefined;
    const policy: WeightPolicyOptions = {
      dtype: options.dtype ?? (packedCheckpoint ? undefined : 'f32'),
      dtypeOverrides: options.dtypeOverrides,
      storedDtypes: stored,
    };
    // What openMappedCheckpoint will decide, known before anything is mapped (mapping reads ahead).
    checkMemory(policy, packedCheckpoint && nativeAddon() !== null && (backend === 'cpu' || backend === 'native'));

    // Before the tokenizer, which reads generation_config.json too: a broken one is reported as itself.
    const generationConfig = readGenerationConfig(folder);
    const tokenizer = pathEntryExists(path.join(folder, 'tokenizer.json')) ? await GraniteTokenizer.fromFolder(folder) : null;
    if (packedCheckpoint) {
      checkpoint.close();
      source = openMappedCheckpoint(folder);
    }
    const model = family.createModel(config);
    try {
      const plan = planWeightDtypes(
        [...model.namedParameters()].map(([name, p]) => [name, p.shape] as const),
        policy,
      );
      for (const message of plan.notes) options.onNote?.({ kind: 'dtype', message });
      if (stored !== undefined) {
        const repack = repackNote(folder, stored, plan.dtypes);
        if (repack !== undefined) options.onNote?.({ kind: 'dtype', message: repack });
      }
      loadWeights(model, source, converted, { onProgress: options.onProgress, signal: options.signal, dtypes: plan.dtypes });
    } catch (err) {
      model.dispose();
      throw err;
    }
    return new GraniteModel(model, tokenizer, folder, generationConfig, backend, weightsSource(source, packedCheckpoint, converted));
  } finally {
    source.close();
  }
}

/**
 * Each parameter's stored dtype when the checkpoint is packed (its packed format, else f32), by
 * parameter name; undefined for a float checkpoint.
 */
function storedDtypes(checkpoint: Checkpoint, keyMap: ReadonlyMap<string, string>): Map<string, WeightDtype> | undefined {
  const stored = new Map<string, WeightDtype>();
  let packed = false;
  for (const [param, key] of keyMap) {
    if (!checkpoint.has(key)) continue; // reported with the other missing names by the shape check
    const format = checkpoint.info(key).packed?.format;
    if (format !== undefined) packed = true;
    stored.set(param, format ?? 'f32');
  }
  return packed ? stored : undefined;
}

/** One note for the packed weights held in another dtype than stored, or undefined when none is. */
function repackNote(folder: string, stored: ReadonlyMap<string, WeightDtype>, held: ReadonlyMap<string, WeightDtype>): string | undefined {
  const moves = new Map<string, number>();
  for (const [name, from] of stored) {
    const to = held.get(name) ?? 'f32';
    if (from === 'f32' || to === from) continue;
    const move = `${from} → ${to}`;
    moves.set(move, (moves.get(move) ?? 0) + 1);
  }
  if (moves.size === 0) return undefined;
  const list = [...moves].map(([move, n]) => `${n} weight${n === 1 ? '' : 's'} ${move}`).join(', ');
  return (
    `${folder} is a packed checkpoint; the dtype asked for repacks ${list} (dequantized, then packed again): ` +
    "the values are no more precise than the checkpoint's, and loading is slower. Load it without a dtype to use its weights as stored."
  );
}

/** Where the loaded weights' bytes live, from the counts of the mapped checkpoint. */
function weightsSource(
  source: Checkpoint | MappedCheckpoint,
  packedCheckpoint: boolean,
  keyMap: ReadonlyMap<string, string>,
): WeightsSource {
  const checkpoint = source instanceof MappedCheckpoint ? source.checkpoint : source;
  const total = [...keyMap.values()].reduce((n, key) => n + checkpoint.info(key).byteLength, 0);
  if (!(source instanceof MappedCheckpoint)) return { packedCheckpoint, mapped: false, mappedBytes: 0, copiedBytes: total };
  const { inPlaceBytes } = source.stats();
  return {
    packedCheckpoint,
    mapped: source.mapped,
    ...(source.notMappedReason !== undefined ? { notMappedReason: source.notMappedReason } : {}),
    mappedBytes: inPlaceBytes,
    copiedBytes: total - inPlaceBytes,
  };
}
