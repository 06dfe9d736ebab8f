/**
 * `graniteflow inspect`: what a model is and what it needs, from its config (no weights read) and,
 * for a local folder, its safetensors headers.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  backendMemoryLimit,
  CONFIG_LIMITS,
  countParameters,
  estimateMemory,
  familyOf,
  formatBytes,
  HOST_MEMORY_FRACTION,
  hubOfflineMode,
  modelFamily,
  presetConfig,
  readModelConfig,
  RepoCache,
  resolveCacheDir,
  type CausalLMConfig,
} from '@graniteflow/granite';
import {
  Checkpoint,
  formatTable,
  INDEX_FILE,
  isBackendAvailable,
  jsonErrorDetail,
  SINGLE_FILE,
  WEIGHT_DTYPES,
  type WeightDtype,
} from '@graniteflow/core';
import { COMMON_OPTIONS, flag, formatHelp, numberOption, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { CliError, UsageError } from '../errors';
import { formatCount } from '../format';
import type { CliIO } from '../io';
import { resolveModelArg, type ModelSource } from '../model_source';
import type { Command } from './common';

const OPTIONS: OptionTable = {
  model: { type: 'string', short: 'm', value: 'M', description: 'the model (also accepted as the positional argument)' },
  revision: { type: 'string', value: 'REV', description: 'hub branch, tag or commit (default main)' },
  'cache-dir': { type: 'string', value: 'DIR', description: 'Hugging Face cache directory' },
  offline: { type: 'boolean', description: 'use only files already in the cache' },
  'context-length': {
    type: 'string',
    value: 'N',
    description: 'tokens of context the memory estimate budgets KV cache for (default 4096)',
  },
  'batch-size': { type: 'string', value: 'B', description: 'sequences the memory estimate budgets for (default 1)' },
  json: { type: 'boolean', description: 'print the report as JSON' },
  ...COMMON_OPTIONS,
};

/** The longest context and largest batch the estimate budgets for (as large as a config's max_position_embeddings may be). */
const MAX_CONTEXT_LENGTH = CONFIG_LIMITS.max_position_embeddings;
const MAX_BATCH_SIZE = 1 << 20;

/** What each dtype is, for the report. */
export const DTYPE_NOTES: Record<WeightDtype, string> = {
  f32: 'float32 everywhere: what tfjs computes in, the reference',
  bf16: 'bf16 matrices (lossless for the released bf16 checkpoints)',
  q8_0: "8-bit blocks of 32 (GGUF's Q8_0)",
  q4_0: "4-bit blocks of 32 (GGUF's Q4_0; llama.cpp's Q4_0 files hold the output matrix in Q6_K, which graniteflow lacks)",
};

/** The backends the report says a dtype fits (or not). */
export const REPORTED_BACKENDS = ['native', 'wasm', 'cpu'] as const;

/** Everything `inspect` reports, as data. */
export interface InspectReport {
  model: string;
  source: string;
  config: CausalLMConfig;
  layers: { index: number; type: string }[];
  parameters: { total: number; active: number };
  contextLength: number;
  batchSize: number;
  /** This machine's memory, which the native and cpu limits are a share of. */
  machineBytes: number;
  /** The most each backend may hold here. */
  backendLimits: Record<(typeof REPORTED_BACKENDS)[number], number>;
  /** One entry per dtype: weights as the dtype policy holds them, float32 caches. */
  memory: {
    dtype: WeightDtype;
    weightBytes: number;
    /** Parameters held packed at the dtype; the rest stay float32. */
    packedParameters: number;
    mambaStateBytesPerSequence: number;
    kvCacheBytesPerToken: number;
    /** Activations of one 512-token prefill chunk (the widest layer's), on top of weights and caches. */
    activationBytes: number;
    totalBytes: number;
    fits: Record<(typeof REPORTED_BACKENDS)[number], boolean>;
    note: string;
  }[];
  /** A local folder's checkpoint, from its headers (absent without weights, or for the hub and presets). */
  checkpoint?: CheckpointReport;
}

/** What a folder's safetensors files hold, from their headers. */
export interface CheckpointReport {
  /** A graniteflow packed checkpoint (written by `graniteflow quantize`). */
  packed: boolean;
  files: number;
  /** Bytes of tensor data in the files. */
  tensorBytes: number;
  /** Tensors by stored dtype: the packed format, or the safetensors dtype. */
  dtypes: { dtype: string; tensors: number; bytes: number }[];
  /** Loaded as stored (packed checkpoints only): weights, total for the context and batch, and where it fits. */
  asStored?: { dtype: WeightDtype; weightBytes: number; totalBytes: number; fits: Record<(typeof REPORTED_BACKENDS)[number], boolean> };
  /** Why the headers could not be read (then nothing else is filled in). */
  error?: string;
}

function readConfigFile(folder: string): CausalLMConfig {
  return readModelConfig(folder).config;
}

async function configOf(source: ModelSource, values: Record<string, unknown>): Promise<{ config: CausalLMConfig; from: string }> {
  if (source.kind !== 'hub') return { config: readConfigFile(source.folder), from: source.folder };
  // A released model's config ships with graniteflow as a preset: no network needed.
  if (source.preset) return { config: presetConfig(source.preset), from: `built-in preset ${source.preset}` };
  return hubConfig(source.repoId, {
    revision: (values.revision as string | undefined) ?? 'main',
    cacheDir: values['cache-dir'] as string | undefined,
    offline: values.offline === true,
  });
}

/**
 * config.json of a hub repo: from the Hugging Face cache when a snapshot has it, else fetched
 * alone (inspect must not download gigabytes of weights to print a summary).
 */
async function hubConfig(
  repoId: string,
  { revision, cacheDir, offline }: { revision: string; cacheDir?: string; offline: boolean },
): Promise<{ config: CausalLMConfig; from: string }> {
  const cache = new RepoCache(resolveCacheDir(cacheDir), repoId);
  const commit = await cache.readRef(revision);
  if (commit && fs.existsSync(cache.snapshotPath(commit, 'config.json'))) {
    const folder = cache.snapshotDir(commit);
    return { config: readConfigFile(folder), from: folder };
  }
  if (offline || hubOfflineMode()) {
    throw new CliError(
      `Offline mode is on (--offline or HF_HUB_OFFLINE), and ${repoId} (revision "${revision}") has no config.json in the cache ${cache.root}. ` +
        `Turn offline mode off, or download it first (graniteflow download ${repoId}).`,
    );
  }
  const endpoint = (process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const url = `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/config.json`;
  const token = process.env.HF_TOKEN;
  let response: Response;
  try {
    response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new CliError(
      `Could not reach ${url} (${(err as Error).message}). Check the network or HF_ENDPOINT, or inspect a local folder or a preset name instead.`,
    );
  }
  if (response.status === 401 || response.status === 403)
    throw new CliError(`The hub refused access to ${repoId} (HTTP ${response.status}); set HF_TOKEN to a token with access.`);
  if (response.status === 404) throw new CliError(`${repoId} (revision "${revision}") was not found on the hub, or it has no config.json.`);
  if (!response.ok) throw new CliError(`Fetching ${url} failed: HTTP ${response.status}.`);
  let raw: unknown;
  try {
    raw = await response.json();
  } catch (err) {
    throw new CliError(`${url} is not valid JSON: ${jsonErrorDetail(err)}`);
  }
  const impl = modelFamily((raw as { model_type?: unknown } | null)?.model_type, url);
  return { config: impl.parseConfig(raw, url), from: url };
}

/** Builds the report for a config. */
export function inspectConfig(
  config: CausalLMConfig,
  {
    model,
    source,
    contextLength = 4096,
    batchSize = 1,
    machineBytes = os.totalmem(),
  }: { model: string; source: string; contextLength?: number; batchSize?: number; machineBytes?: number },
): InspectReport {
  const limits = Object.fromEntries(
    REPORTED_BACKENDS.map((b) => [b, backendMemoryLimit(b, machineBytes).bytes]),
  ) as InspectReport['backendLimits'];
  return {
    model,
    source,
    config,
    layers: familyOf(config)
      .layerKinds(config)
      .map((type, index) => ({ index, type })),
    parameters: countParameters(config),
    contextLength,
    batchSize,
    machineBytes,
    backendLimits: limits,
    memory: WEIGHT_DTYPES.map((dtype) => {
      const e = estimateMemory(config, { contextLength, batchSize, dtype });
      return {
        dtype,
        weightBytes: e.weightBytes,
        packedParameters: e.packedParameters,
        mambaStateBytesPerSequence: e.stateBytesPerSequence,
        kvCacheBytesPerToken: e.kvBytesPerToken,
        activationBytes: e.activationBytes,
        totalBytes: e.totalBytes,
        fits: Object.fromEntries(REPORTED_BACKENDS.map((b) => [b, e.totalBytes <= limits[b]])) as InspectReport['memory'][number]['fits'],
        note: DTYPE_NOTES[dtype],
      };
    }),
  };
}

/**
 * The report on the checkpoint in `folder`, from its headers alone, or undefined when the folder
 * holds no weights (config only). A packed one is also estimated as it loads: held as stored.
 */
export function inspectCheckpoint(
  folder: string,
  config: CausalLMConfig,
  {
    contextLength = 4096,
    batchSize = 1,
    machineBytes = os.totalmem(),
  }: { contextLength?: number; batchSize?: number; machineBytes?: number } = {},
): CheckpointReport | undefined {
  if (!fs.existsSync(path.join(folder, SINGLE_FILE)) && !fs.existsSync(path.join(folder, INDEX_FILE))) return undefined;
  let checkpoint: Checkpoint;
  try {
    checkpoint = Checkpoint.open(folder);
  } catch (err) {
    return { packed: false, files: 0, tensorBytes: 0, dtypes: [], error: (err as Error).message };
  }
  try {
    const byDtype = new Map<string, { dtype: string; tensors: number; bytes: number }>();
    const files = new Set<string>();
    let tensorBytes = 0;
    for (const name of checkpoint.names()) {
      const info = checkpoint.info(name);
      const dtype = info.packed?.format ?? info.dtype;
      let entry = byDtype.get(dtype);
      if (entry === undefined) byDtype.set(dtype, (entry = { dtype, tensors: 0, bytes: 0 }));
      entry.tensors++;
      entry.bytes += info.byteLength;
      tensorBytes += info.byteLength;
      files.add(info.file);
    }
    const packed = checkpoint.names().some((n) => checkpoint.info(n).packed !== undefined);
    const report: CheckpointReport = {
      packed,
      files: files.size,
      tensorBytes,
      dtypes: [...byDtype.values()].sort((a, b) => b.bytes - a.bytes),
    };
    if (packed) {
      const keys = familyOf(config).convertWeights(new Map(checkpoint.names().map((k) => [k, k])), config);
      const storedDtypes = new Map<string, WeightDtype>();
      for (const [param, key] of keys)
        storedDtypes.set(param, checkpoint.has(key) ? (checkpoint.info(key).packed?.format ?? 'f32') : 'f32');
      const e = estimateMemory(config, { contextLength, batchSize, storedDtypes });
      report.asStored = {
        dtype: e.dtype,
        weightBytes: e.weightBytes,
        totalBytes: e.totalBytes,
        fits: Object.fromEntries(REPORTED_BACKENDS.map((b) => [b, e.totalBytes <= backendMemoryLimit(b, machineBytes).bytes])) as Record<
          (typeof REPORTED_BACKENDS)[number],
          boolean
        >,
      };
    }
    return report;
  } finally {
    checkpoint.close();
  }
}

function formatCheckpoint(c: CheckpointReport): string[] {
  if (c.error !== undefined) return ['', `Checkpoint: its headers cannot be read: ${c.error}`];
  const lines = [
    '',
    `Checkpoint in the folder: ${c.packed ? 'packed (graniteflow quantize)' : 'float'}, ${c.files} file${c.files === 1 ? '' : 's'}, ${formatBytes(c.tensorBytes)} of tensors:`,
  ];
  const table = formatTable([
    ['stored as', 'tensors', 'bytes'],
    ...c.dtypes.map((d) => [d.dtype, String(d.tensors), formatBytes(d.bytes)]),
  ]);
  lines.push(...table.split('\n').map((l) => `  ${l}`));
  if (c.asStored) {
    const fits = REPORTED_BACKENDS.filter((b) => c.asStored!.fits[b]);
    lines.push(
      `  Loaded as stored (no --dtype): ${formatBytes(c.asStored.weightBytes)} of weights, ${formatBytes(c.asStored.totalBytes)} in all; ` +
        `fits ${fits.length ? fits.join(', ') : `none of ${REPORTED_BACKENDS.join(', ')}`}.`,
      '  On native and cpu the packed weights are memory-mapped: pages of these files, shared with the page cache, resident once used.',
    );
  }
  return lines;
}

/** `M M M A M …` grouped in tens, and the runs as index ranges. */
function layerMap(types: readonly string[]): string[] {
  const letters = types.map((t) => (t === 'attention' ? 'A' : t === 'mamba' ? 'M' : '?'));
  const groups: string[] = [];
  for (let i = 0; i < letters.length; i += 10) groups.push(letters.slice(i, i + 10).join(''));
  const runs: string[] = [];
  let start = 0;
  for (let i = 1; i <= types.length; i++) {
    if (i === types.length || types[i] !== types[start]) {
      runs.push(`${start === i - 1 ? start : `${start}-${i - 1}`} ${types[start]}`);
      start = i;
    }
  }
  return [groups.join(' '), runs.join(', ')];
}

function formatReport(r: InspectReport): string {
  const c = r.config;
  const kinds = r.layers.map((l) => l.type);
  const mamba = kinds.filter((t) => t === 'mamba').length;
  const attention = kinds.length - mamba;
  const [letters, runs] = layerMap(kinds);
  const summary: [string, string][] = [
    ['model', r.model],
    ['from', r.source],
    ['model_type', c.model_type],
    ['layers', `${c.num_hidden_layers} (${mamba} Mamba-2, ${attention} attention)`],
    ['hidden_size', String(c.hidden_size)],
    ['vocab_size', String(c.vocab_size)],
    ...familyOf(c).describe(c),
    ['context', `max_position_embeddings ${c.max_position_embeddings}`],
    ['tied embeddings', String(c.tie_word_embeddings)],
    ['parameters', `${formatCount(r.parameters.total)} total, ${formatCount(r.parameters.active)} active per token`],
  ];
  const width = Math.max(...summary.map(([k]) => k.length));
  const lines = summary.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  lines.push('', 'Layer map (M = Mamba-2, A = attention):', `  ${letters}`, `  ${runs}`, '');
  lines.push(`Memory for ${r.batchSize} sequence${r.batchSize === 1 ? '' : 's'} of ${r.contextLength} tokens, and the backends it fits:`);
  const table = formatTable([
    ['dtype', 'weights', 'Mamba state/seq', 'KV cache/token', 'activations/chunk', `total @ ${r.contextLength}`, ...REPORTED_BACKENDS],
    ...r.memory.map((m) => [
      m.dtype,
      formatBytes(m.weightBytes),
      formatBytes(m.mambaStateBytesPerSequence),
      formatBytes(m.kvCacheBytesPerToken),
      formatBytes(m.activationBytes),
      formatBytes(m.totalBytes),
      ...REPORTED_BACKENDS.map((b) => (m.fits[b] ? 'fits' : '-')),
    ]),
  ]);
  lines.push(...table.split('\n').map((l) => `  ${l}`));
  lines.push(...r.memory.map((m) => `  ${m.dtype}: ${m.note}`));
  const host = `${Math.round(100 * HOST_MEMORY_FRACTION)}% of this machine's ${formatBytes(r.machineBytes)} (${formatBytes(r.backendLimits.cpu)})`;
  lines.push(
    `  Limits: wasm ${formatBytes(r.backendLimits.wasm)} of tensors (its heap stops at 4 GiB); native and cpu ${host}.` +
      (isBackendAvailable('native') ? '' : ' native: @graniteflow/native is not installed here.'),
  );
  lines.push(
    '  Weights other than the matrices (norms, router, conv1d, A_log, D, dt_bias) and the caches stay float32. Load with --dtype.',
  );
  if (r.checkpoint) lines.push(...formatCheckpoint(r.checkpoint));
  return `${lines.join('\n')}\n`;
}

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'config summary, layer map, parameters, memory per dtype and the backends it fits',
  help: () =>
    formatHelp(
      'graniteflow inspect [options] M   (M: a folder, a hub repo id or a preset name)',
      'Reads only config.json (presets need no download): layers, parameter counts, and memory at each --dtype (f32, bf16, q8_0, q4_0) with the backends (native, wasm, cpu) it fits on this machine. ' +
        'For a local folder, also what its safetensors headers hold: tensors and bytes per stored dtype, and for a packed checkpoint (graniteflow quantize) the memory it takes loaded as stored.',
      OPTIONS,
      [
        'graniteflow inspect granite-4.0-h-tiny',
        'graniteflow inspect ./my-model --context-length 32768',
        'graniteflow inspect ibm-granite/granite-4.0-h-small --json',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('inspect', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(inspectCommand.help());
      return 0;
    }
    const named = stringOption(values, 'model');
    if (positionals.length > 1 || (named !== undefined && positionals.length > 0)) {
      throw new UsageError('inspect takes one model.', 'inspect');
    }
    const arg = named ?? positionals[0];
    // Bounded so every figure of the estimate stays a finite number.
    const contextLength = numberOption('inspect', values, 'context-length', { min: 1, max: MAX_CONTEXT_LENGTH, integer: true }) ?? 4096;
    const batchSize = numberOption('inspect', values, 'batch-size', { min: 1, max: MAX_BATCH_SIZE, integer: true }) ?? 1;
    const source = resolveModelArg(arg);
    const { config, from } = await configOf(source, values);
    const report = inspectConfig(config, { model: source.name, source: from, contextLength, batchSize });
    const checkpoint = source.kind === 'hub' ? undefined : inspectCheckpoint(source.folder, config, { contextLength, batchSize });
    if (checkpoint) report.checkpoint = checkpoint;
    io.stdout.write(flag(values, 'json') ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return 0;
  },
};
