/** Pieces every model-loading command shares: loading from the common options, sampling options. */
import { isWeightDtype, WEIGHT_DTYPES, type WeightDtype } from '@graniteflow/core';
import type { GenerateOptions, GraniteModel } from '@graniteflow/granite';
import { UsageError } from '../errors';
import { flag, numberOption, stringOption, type OptionTable, type ParsedArgs } from '../args';
import type { CliIO } from '../io';
import { loadModel, resolveModelArg, type ModelSource } from '../model_source';

/** Interface of a subcommand. */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  help(): string;
  run(argv: readonly string[], io: CliIO): Promise<number>;
}

/** Backend names --backend accepts (whether each is installed is checked when it starts). */
const BACKENDS = ['native', 'wasm', 'cpu', 'tensorflow', 'webgl', 'webgpu'];

/** --dtype, for the commands that load a model (generate, chat, serve, logits). */
export const DTYPE_OPTIONS: OptionTable = {
  dtype: {
    type: 'string',
    value: 'D',
    description:
      'hold the weight matrices as f32 (default), bf16, q8_0 or q4_0, quantized while loading; norms, router, conv and SSM parameters stay f32 ' +
      '(H-Micro: 12.8 GB at f32, 1.8 GB at q4_0)',
  },
};

/** The --dtype value, checked (undefined when absent). */
export function dtypeFromArgs(command: string, values: ParsedArgs['values']): WeightDtype | undefined {
  const raw = stringOption(values, 'dtype');
  if (raw === undefined) return undefined;
  if (!isWeightDtype(raw)) throw new UsageError(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}; got "${raw}".`, command);
  return raw;
}

/** Loads the model named by --model (and --backend, --dtype, --revision, --cache-dir, --offline, --quiet, --verbose, --debug). */
export async function loadFromArgs(
  values: ParsedArgs['values'],
  io: CliIO,
  extra: { command: string; contextLength?: number; prefillChunk?: number; signal?: AbortSignal },
): Promise<{ model: GraniteModel; source: ModelSource }> {
  const { command, ...rest } = extra;
  const dtype = dtypeFromArgs(command, values);
  const backend = stringOption(values, 'backend');
  if (backend !== undefined && !BACKENDS.includes(backend)) {
    throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}; got "${backend}".`);
  }
  const source = resolveModelArg(stringOption(values, 'model'));
  const model = await loadModel(source, {
    backend,
    dtype,
    revision: stringOption(values, 'revision'),
    cacheDir: stringOption(values, 'cache-dir'),
    // Without --offline, undefined (not false) so that HF_HUB_OFFLINE still decides.
    offline: flag(values, 'offline') || undefined,
    quiet: flag(values, 'quiet'),
    verbose: flag(values, 'verbose') || flag(values, 'debug'),
    stderr: io.stderr,
    ...rest,
  });
  return { model, source };
}

/** Generation options from --max-tokens, --temperature, --top-k, --top-p, --min-p, --repetition-penalty, --seed, --prefill-chunk, --ctx. */
export function samplingFromArgs(command: string, values: ParsedArgs['values']): GenerateOptions {
  return {
    maxNewTokens: numberOption(command, values, 'max-tokens', { min: 1, integer: true }) ?? 256,
    // Unset without the flag (greedy), so that the model's generation_config.json can fill it in.
    temperature: numberOption(command, values, 'temperature', { min: 0 }),
    topK: numberOption(command, values, 'top-k', { min: 0, integer: true }),
    topP: positive(command, 'top-p', numberOption(command, values, 'top-p', { min: 0, max: 1 })),
    minP: numberOption(command, values, 'min-p', { min: 0, max: 1 }),
    repetitionPenalty: positive(command, 'repetition-penalty', numberOption(command, values, 'repetition-penalty', { min: 0 })),
    seed: numberOption(command, values, 'seed', { min: 0, max: 2 ** 32 - 1, integer: true }),
    prefillChunk: numberOption(command, values, 'prefill-chunk', { min: 1, integer: true }),
    maxContext: numberOption(command, values, 'ctx', { min: 2, integer: true }),
  };
}

/**
 * The context of a loaded model: --ctx (refused past the model's max_position_embeddings), or
 * max_position_embeddings itself.
 */
export function contextOf(command: string, model: GraniteModel, requested: number | undefined): number {
  const limit = model.config.max_position_embeddings;
  if (requested !== undefined && requested > limit) {
    throw new UsageError(`--ctx ${requested} is more than this model's max_position_embeddings (${limit} positions).`, command);
  }
  return requested ?? limit;
}

function positive(command: string, name: string, x: number | undefined): number | undefined {
  if (x === 0) throw new UsageError(`--${name} must be greater than 0.`, command);
  return x;
}
