import * as fs from 'node:fs';
import * as path from 'node:path';
import { readNpy, type NpyArray } from '@graniteflow/core';

/** fixtures/golden: checkpoints and outputs of an independent float64 reference (see its README). */
export const GOLDEN = path.resolve(__dirname, '../../../fixtures/golden');

export const GOLDEN_MODELS = ['micro_dense', 'tiny_moe', 'chat_tiny'] as const;

export interface GoldenCase {
  dir: string;
  inputs: { prompts: number[][]; input_ids: number[][]; attention_mask: number[][]; pad_token_id: number };
  expected: { greedy: { max_new_tokens: number; tokens: number[][] } };
  logits: NpyArray;
  hiddenStates: NpyArray;
  decodeLogits: NpyArray;
}

export function loadGolden(name: string): GoldenCase {
  const dir = path.join(GOLDEN, name);
  const json = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  return {
    dir,
    inputs: json('inputs.json'),
    expected: json('expected.json'),
    logits: readNpy(path.join(dir, 'logits.npy')),
    hiddenStates: readNpy(path.join(dir, 'hidden_states.npy')),
    decodeLogits: readNpy(path.join(dir, 'decode_logits.npy')),
  };
}

/** Max |a − b| over the rows (b, t) where `mask[b][t] == 1`, each row `width` wide. */
export function maxDiffAtRealPositions(actual: ArrayLike<number>, expected: ArrayLike<number>, mask: number[][], width: number): number {
  let worst = 0;
  const seq = mask[0].length;
  mask.forEach((row, b) =>
    row.forEach((m, t) => {
      if (!m) return;
      const base = (b * seq + t) * width;
      for (let i = 0; i < width; i++) worst = Math.max(worst, Math.abs(actual[base + i] - expected[base + i]));
    }),
  );
  return worst;
}
