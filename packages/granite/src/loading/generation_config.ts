import * as path from 'node:path';
import { pathEntryExists } from '@graniteflow/core';
import { readJsonObject } from './model_files';

/** The parts of `generation_config.json` graniteflow uses. */
export interface GenerationConfig {
  eosTokenIds: number[];
  padTokenId: number | null;
  bosTokenId: number | null;
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
  };
}
