import * as fs from 'node:fs';
import * as path from 'node:path';
import { floatToBf16, SINGLE_FILE, writeSafetensorsStream, type StreamedTensor } from '@graniteflow/core';
import { familyOf } from '../models';
import type { CausalLM, CausalLMConfig } from '../models/causal_lm';
import type { TokenizerFiles } from '../tokenizer/byte_level_bpe_files';

/** Files of a model folder besides config and weights that a saved copy takes along when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'special_tokens_map.json',
  'generation_config.json',
] as const;

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** Float storage of the weights (default `'F32'`, exact; `'BF16'` halves the file). */
  dtype?: 'F32' | 'BF16';
  /** A model folder whose tokenizer files ({@link TOKENIZER_FILES}) are copied along, so the result generates text. */
  tokenizerFrom?: string;
  /** Tokenizer files to write instead (e.g. `byteLevelBpeFiles()`). */
  tokenizer?: TokenizerFiles;
}

/** The config.json of `config`, as transformers reads it, naming its family's architecture. */
export function configJson(config: CausalLMConfig): Record<string, unknown> {
  const family = familyOf(config);
  return { ...family.configJson(config), architectures: [family.architecture] };
}

/**
 * Saves `model` as a Hugging Face–layout folder: config.json and model.safetensors with the
 * checkpoint's tensor names and shapes (loadable by `fromPretrained` and by transformers'
 * `from_pretrained`), plus the tokenizer files of `tokenizerFrom`. Weights are written one at a
 * time (memory stays near the largest). The folder is built next to `dir` and renamed into place
 * (an existing `dir` is replaced only once the new one is complete), so a failure leaves `dir` as
 * it was. Packed weights are saved dequantized.
 *
 * @returns the files written, relative to `dir`
 */
export async function saveCheckpoint(model: CausalLM, dir: string, options: SaveCheckpointOptions = {}): Promise<string[]> {
  const dtype = options.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'BF16') throw new RangeError(`saveCheckpoint: dtype must be 'F32' or 'BF16', got ${String(dtype)}.`);
  const target = path.resolve(dir);
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) throw new Error(`saveCheckpoint: ${target} exists and is not a folder.`);
  const staging = `${target}.partial-${process.pid}-${Date.now()}`;
  fs.mkdirSync(staging, { recursive: true });
  try {
    const written: string[] = [];
    let cached: Uint8Array | null = null;
    let cachedName = '';
    const tensors: StreamedTensor[] = [...model.namedParameters()].map(([name, p]) => ({
      name,
      dtype,
      shape: [...p.shape],
      fill: (dst: Uint8Array, offset: number) => {
        // One parameter read when its first piece is wanted, then its bytes handed out in pieces.
        if (offset === 0 || cached === null || cachedName !== name) {
          const value = p.checkpointValue();
          const floats = value.dataSync() as Float32Array;
          value.dispose();
          cached =
            dtype === 'F32'
              ? new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength)
              : new Uint8Array(floatToBf16(floats).buffer);
          cachedName = name;
        }
        dst.set(cached.subarray(offset, offset + dst.length));
        if (offset + dst.length === cached.length) cached = null;
      },
    }));
    await writeSafetensorsStream(path.join(staging, SINGLE_FILE), tensors, { metadata: { format: 'pt' } });
    written.push(SINGLE_FILE);
    // torch_dtype says how the weights are stored, as transformers writes it.
    const config = { ...configJson(model.config), torch_dtype: dtype === 'F32' ? 'float32' : 'bfloat16' };
    fs.writeFileSync(path.join(staging, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    written.push('config.json');
    if (options.tokenizerFrom !== undefined) {
      for (const f of TOKENIZER_FILES) {
        const from = path.join(options.tokenizerFrom, f);
        if (!fs.existsSync(from)) continue;
        fs.copyFileSync(from, path.join(staging, f));
        written.push(f);
      }
      if (!written.includes('tokenizer.json')) throw new Error(`saveCheckpoint: ${options.tokenizerFrom} has no tokenizer.json to copy.`);
    } else if (options.tokenizer !== undefined) {
      for (const [f, json] of Object.entries(options.tokenizer)) {
        fs.writeFileSync(path.join(staging, f), `${JSON.stringify(json, null, 2)}\n`);
        written.push(f);
      }
    }
    const old = fs.existsSync(target) ? `${target}.old-${process.pid}-${Date.now()}` : null;
    if (old) fs.renameSync(target, old);
    fs.renameSync(staging, target);
    if (old) fs.rmSync(old, { recursive: true, force: true });
    return written;
  } catch (err) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}
