/**
 * Command-line parsing on Node's `util.parseArgs`: option tables that also produce the help text,
 * and checked conversions of option values. Every mistake becomes a {@link UsageError} (exit 2).
 */
import { parseArgs } from 'node:util';
import { UsageError } from './errors';

/** One option of a command. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Shown in help after the option name, e.g. `N` in `--max-tokens N`. */
  value?: string;
  description: string;
}

export type OptionTable = Record<string, OptionSpec>;

/** Options every model-loading command accepts. */
export const MODEL_OPTIONS: OptionTable = {
  model: {
    type: 'string',
    short: 'm',
    value: 'M',
    description: 'model folder, Hugging Face repo id (org/name) or preset name (default: the embedded random model)',
  },
  backend: {
    type: 'string',
    value: 'NAME',
    description:
      'backend: native (the default when @graniteflow/native loads: threaded SIMD kernels, packed weights, memory-mapped packed checkpoints), ' +
      'wasm (the default otherwise), cpu or tensorflow (also GRANITEFLOW_BACKEND)',
  },
  revision: { type: 'string', value: 'REV', description: 'hub branch, tag or commit (default main)' },
  'cache-dir': {
    type: 'string',
    value: 'DIR',
    description: 'Hugging Face cache (default HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)',
  },
  offline: { type: 'boolean', description: 'use only the Hugging Face cache, no network at all (also HF_HUB_OFFLINE=1)' },
};

/** Options of every command. */
export const COMMON_OPTIONS: OptionTable = {
  quiet: { type: 'boolean', short: 'q', description: 'no progress bars or notices on stderr' },
  debug: { type: 'boolean', description: 'show stack traces of errors' },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

/** Sampling options shared by generate and chat. */
export const SAMPLING_OPTIONS: OptionTable = {
  'max-tokens': { type: 'string', short: 'n', value: 'N', description: 'new tokens at most (default 256)' },
  temperature: {
    type: 'string',
    short: 't',
    value: 'T',
    description:
      "sampling temperature; 0 = greedy (default 0, or the model's generation_config.json: do_sample, temperature, top_k, top_p, repetition_penalty)",
  },
  'top-k': { type: 'string', value: 'K', description: 'sample among the K most likely tokens (default off)' },
  'top-p': { type: 'string', value: 'P', description: 'nucleus sampling mass in (0, 1] (default 1 = off)' },
  'min-p': { type: 'string', value: 'P', description: 'drop tokens below P × the top probability (default off)' },
  'repetition-penalty': { type: 'string', value: 'R', description: 'penalty for tokens already seen (default 1 = off)' },
  seed: { type: 'string', value: 'S', description: 'random seed, for reproducible sampling' },
  'prefill-chunk': {
    type: 'string',
    value: 'N',
    description: 'feed the prompt N tokens at a time (default 512; same result, one chunk of activations)',
  },
  ctx: {
    type: 'string',
    value: 'N',
    description:
      "context length: positions the prompt and new tokens may fill, at most the model's max_position_embeddings (the default); memory is checked for it before loading",
  },
};

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses `argv` against `table`; unknown options and missing values are usage errors. */
export function parseCommandArgs(command: string, argv: readonly string[], table: OptionTable): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    if (values.quiet === true && values.verbose === true) {
      // One would silently win; say so instead.
      throw new UsageError('Give --quiet (-q) or --verbose (-v), not both.', command);
    }
    return { values: values as ParsedArgs['values'], positionals };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // parseArgs phrases its errors for developers ("Option '--x <value>' argument missing"); keep
    // the gist and point to the help.
    const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '.');
    throw new UsageError(message, command);
  }
}

/** Help text: usage line, description, then one line per option. */
export function formatHelp(usage: string, description: string, table: OptionTable, examples: string[] = []): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.value ? ` ${spec.value}` : ''}`;
    return [flag, spec.description + (spec.multiple ? ' (repeatable)' : '')];
  });
  const width = Math.max(...rows.map(([f]) => f.length));
  const lines = [`Usage: ${usage}`, '', description, '', 'Options:', ...rows.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`)];
  if (examples.length) lines.push('', 'Examples:', ...examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}

function bad(command: string, name: string, expected: string, raw: string): never {
  throw new UsageError(`--${name} must be ${expected}, got "${raw}".`, command);
}

/** A number option within [min, max] (integers only when `integer`), or undefined when absent. */
export function numberOption(
  command: string,
  values: ParsedArgs['values'],
  name: string,
  { min = -Infinity, max = Infinity, integer = false }: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') return bad(command, name, 'a number', String(raw));
  const text = raw.trim();
  const x = text === '' ? NaN : Number(text);
  const range = `${Number.isFinite(min) ? ` ≥ ${min}` : ''}${Number.isFinite(min) && Number.isFinite(max) ? ' and' : ''}${Number.isFinite(max) ? ` ≤ ${max}` : ''}`;
  const expected = `${integer ? 'an integer' : 'a number'}${range}`;
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x)) || x < min || x > max) return bad(command, name, expected, raw);
  return x;
}

/** A string option, or undefined. */
export function stringOption(values: ParsedArgs['values'], name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A repeatable string option (empty when absent). */
export function stringList(values: ParsedArgs['values'], name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** A boolean flag. */
export function flag(values: ParsedArgs['values'], name: string): boolean {
  return values[name] === true;
}

/** Parses "1,2,3" (spaces allowed) into token ids. */
export function parseIdList(command: string, name: string, raw: string): number[] {
  const parts = raw.split(/[\s,]+/).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--${name} needs at least one token id, e.g. --${name} 1,2,3.`, command);
  return parts.map((p) => {
    const x = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(x)) {
      throw new UsageError(`--${name} must be a comma-separated list of non-negative integers; "${p}" is not one.`, command);
    }
    return x;
  });
}
