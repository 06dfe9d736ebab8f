import * as path from 'node:path';
import { pathEntryExists } from '@graniteflow/core';
import { readJsonObject } from './model_files';

/** Sampling defaults a model folder's `generation_config.json` gives (as transformers reads them). */
export interface SamplingDefaults {
  /** Set only with `do_sample: true` (transformers samples only then). */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Applies to greedy decoding too. */
  repetitionPenalty?: number;
}

/** The parts of `generation_config.json` graniteflow uses. */
export interface GenerationConfig {
  eosTokenIds: number[];
  padTokenId: number | null;
  bosTokenId: number | null;
  /** What generation uses where the caller sets nothing (the CLI's flags override each). */
  sampling: SamplingDefaults;
}

function positiveNumber(raw: Record<string, unknown>, key: string): number | undefined {
  const v = raw[key];
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}

/** transformers' semantics: temperature, top_k and top_p only with do_sample; top_k 0 and top_p 1 are off. */
function samplingDefaults(raw: Record<string, unknown>): SamplingDefaults {
  const out: SamplingDefaults = {};
  const penalty = positiveNumber(raw, 'repetition_penalty');
  if (penalty !== undefined && penalty !== 1) out.repetitionPenalty = penalty;
  if (raw.do_sample !== true) return out;
  out.temperature = positiveNumber(raw, 'temperature') ?? 1;
  const topK = positiveNumber(raw, 'top_k');
  if (topK !== undefined && Number.isInteger(topK)) out.topK = topK;
  const topP = positiveNumber(raw, 'top_p');
  if (topP !== undefined && topP < 1) out.topP = topP;
  return out;
}

function ids(v: unknown): number[] {
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isInteger(x));
  return Number.isInteger(v) ? [v as number] : [];
}

/**
 * Reads `generation_config.json` of a folder if present (a missing file is not an error). A file
 * that is there but unreadable or not a JSON object is a `ModelFileError` naming it.
 */
export function readGenerationConfig(folder: string): GenerationConfig | null {
  const file = path.join(folder, 'generation_config.json');
  if (!pathEntryExists(file)) return null;
  const raw = readJsonObject(
    file,
    "generation_config.json holds the model's generation defaults (its end-of-sequence ids): download the model again, repair the file, or delete it (the tokenizer's end-of-sequence token is then used).",
  );
  return {
    eosTokenIds: ids(raw.eos_token_id),
    padTokenId: Number.isInteger(raw.pad_token_id) ? (raw.pad_token_id as number) : null,
    bosTokenId: Number.isInteger(raw.bos_token_id) ? (raw.bos_token_id as number) : null,
    sampling: samplingDefaults(raw),
  };
}
