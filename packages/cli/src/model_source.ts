/**
 * What `--model` names (a folder, a hub repo id, a preset name, or nothing = the embedded model)
 * and loading it with progress bars on stderr.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { WeightDtype } from '@graniteflow/core';
import { formatBytes, fromPretrained, presetNames, type GraniteModel, type LoadNote, type LoadProgress } from '@graniteflow/granite';
import { CliError } from './errors';
import { downloadProgressBar, ProgressBar, type ProgressStream } from './progress';

/** Folder name of the model shipped inside the package. */
export const EMBEDDED_MODEL_NAME = 'tiny-kjv-granite-4.0-h';

/** Absolute path of the embedded model (`models/` next to `src/` and `dist/` in the package). */
export function embeddedModelPath(): string {
  return path.resolve(__dirname, '..', 'models', EMBEDDED_MODEL_NAME);
}

/** Where a model comes from. */
export type ModelSource =
  | { kind: 'embedded'; folder: string; name: string }
  | { kind: 'folder'; folder: string; name: string }
  | { kind: 'hub'; repoId: string; name: string; preset?: string };

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function looksLikePath(arg: string): boolean {
  return arg.startsWith('.') || arg.startsWith('/') || arg.startsWith('~') || arg.includes('\\') || arg.split('/').length > 2;
}

const NAMING_HELP =
  'Pass --model a model folder (holding config.json and *.safetensors), a Hugging Face repo id such as ibm-granite/granite-4.0-h-micro, ' +
  `a preset name (${presetNames().join(', ')}), or leave --model out to use the embedded tiny demo model.`;

/** Interprets `--model` (undefined = the embedded model). Does not touch the network. */
export function resolveModelArg(arg: string | undefined): ModelSource {
  if (arg === undefined) return { kind: 'embedded', folder: embeddedModelPath(), name: EMBEDDED_MODEL_NAME };
  if (arg.trim() === '') throw new CliError(`--model is empty. ${NAMING_HELP}`);
  const expanded = arg.startsWith('~/') ? path.join(process.env.HOME ?? '~', arg.slice(2)) : arg;
  if (fs.existsSync(expanded)) {
    const folder = path.resolve(expanded);
    if (!fs.statSync(folder).isDirectory()) {
      throw new CliError(`--model ${arg} is a file, not a model folder. ${NAMING_HELP}`);
    }
    return { kind: 'folder', folder, name: path.basename(folder) };
  }
  if (looksLikePath(arg)) throw new CliError(`No model at ${arg}: the folder does not exist. ${NAMING_HELP}`);
  if (presetNames().includes(arg)) {
    return { kind: 'hub', repoId: `ibm-granite/${arg}`, name: `ibm-granite/${arg}`, preset: arg };
  }
  if (REPO_ID.test(arg)) {
    const presetName = arg.replace(/^ibm-granite\//, '');
    const preset = arg.startsWith('ibm-granite/') && presetNames().includes(presetName) ? presetName : undefined;
    return { kind: 'hub', repoId: arg, name: arg, preset };
  }
  throw new CliError(`No model named "${arg}": it is not a folder, a Hugging Face repo id (org/name) or a preset name. ${NAMING_HELP}`);
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  backend?: string;
  /** How the weight matrices are held (default f32); see `fromPretrained`. */
  dtype?: WeightDtype;
  revision?: string;
  cacheDir?: string;
  offline?: boolean;
  /** Tokens of context the memory check budgets for. */
  contextLength?: number;
  /** Prompt tokens per prefill chunk the memory check budgets activations for. */
  prefillChunk?: number;
  signal?: AbortSignal;
  /** Where progress bars and notices go (stderr); nothing is written when `quiet`. */
  stderr: ProgressStream;
  quiet?: boolean;
  /**
   * Also print the notes on weights kept float32 by the dtype policy (memory notes print unless
   * quiet), and once loaded how the weights are held (`describeWeights`).
   */
  verbose?: boolean;
}

/** The notice printed (once) when the embedded model is used. */
export const EMBEDDED_MODEL_NOTICE =
  `Note: no --model given, so this runs the embedded ${EMBEDDED_MODEL_NAME}, a tiny demo model (9 M parameters, Granite 4.0-H's ` +
  'architecture) that graniteflow trained on the King James Bible and ships inside @graniteflow/cli so the command works offline. ' +
  "It is not one of IBM's Granite models and knows only the Bible's English. For real output use a real checkpoint, " +
  'e.g. --model ibm-granite/granite-4.0-h-micro (downloaded once into the Hugging Face cache) or --model ./path/to/model-folder. ' +
  '(--quiet hides this note.)\n';

let noticeShown = false;

/** Prints {@link EMBEDDED_MODEL_NOTICE} once per process (not at all when quiet). */
export function noteEmbeddedModel(stderr: ProgressStream, quiet: boolean): void {
  if (quiet || noticeShown) return;
  noticeShown = true;
  stderr.write(EMBEDDED_MODEL_NOTICE);
}

/** Loads the model `source` names, drawing a progress bar per download and one for the weights. */
export async function loadModel(source: ModelSource, options: LoadModelOptions): Promise<GraniteModel> {
  const quiet = options.quiet ?? false;
  if (source.kind === 'embedded') noteEmbeddedModel(options.stderr, quiet);
  const label = options.dtype && options.dtype !== 'f32' ? `${source.name} as ${options.dtype}` : source.name;
  const onNote = (note: LoadNote) => {
    if (!quiet && (note.kind === 'memory' || options.verbose)) options.stderr.write(`Note: ${note.message}\n`);
  };
  const onDownload = downloadProgressBar(options.stderr, source.name, quiet);
  const weightsBar = new ProgressBar(options.stderr, `Loading ${label}`, { silent: quiet });
  const onProgress = (p: LoadProgress) => {
    if (p.phase === 'download') {
      onDownload(p);
    } else {
      weightsBar.update(p.loadedBytes, p.totalBytes, p.tensor);
      if (p.loadedTensors === p.totalTensors) weightsBar.done();
    }
  };
  const target = source.kind === 'hub' ? source.repoId : source.folder;
  const model = await fromPretrained(target, {
    backend: options.backend,
    dtype: options.dtype,
    revision: options.revision,
    cacheDir: options.cacheDir,
    offline: options.offline,
    contextLength: options.contextLength,
    prefillChunk: options.prefillChunk,
    signal: options.signal,
    onProgress,
    onNote,
  });
  if (options.verbose && !quiet) options.stderr.write(`${describeWeights(model)}\n`);
  return model;
}

/**
 * How a loaded model holds its weights, for --verbose: "Weights: q4_0 27 tensors 1.1 MiB, f32 40
 * tensors 61.3 KiB; packed checkpoint, memory-mapped: 1.1 MiB are pages of its files (resident once used)".
 */
export function describeWeights(model: GraniteModel): string {
  const dtypes = model.weightSummary().map((s) => `${s.dtype} ${s.tensors} tensor${s.tensors === 1 ? '' : 's'} ${formatBytes(s.bytes)}`);
  const from = model.weightsSource;
  const where = !from.packedCheckpoint
    ? 'read from a float checkpoint'
    : from.mapped
      ? `packed checkpoint, memory-mapped: ${formatBytes(from.mappedBytes)} are pages of its files (resident once used), ${formatBytes(from.copiedBytes)} copied`
      : `packed checkpoint, read into memory (not mapped: ${from.notMappedReason})`;
  return `Weights: ${dtypes.join(', ')}; ${where}.`;
}

/** A short name for a loaded model: the embedded name, the repo id, or the folder's name. */
export function modelDisplayName(source: ModelSource): string {
  return source.name;
}
