import * as fs from 'node:fs';
import * as path from 'node:path';

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

/** Reads `generation_config.json` of a folder if present (a missing file is not an error). */
export function readGenerationConfig(folder: string): GenerationConfig | null {
  const file = path.join(folder, 'generation_config.json');
  if (!fs.existsSync(file)) return null;
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  return {
    eosTokenIds: ids(raw.eos_token_id),
    padTokenId: Number.isInteger(raw.pad_token_id) ? (raw.pad_token_id as number) : null,
    bosTokenId: Number.isInteger(raw.bos_token_id) ? (raw.bos_token_id as number) : null,
  };
}
