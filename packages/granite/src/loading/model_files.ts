import * as path from 'node:path';
import { FileKindError, jsonErrorDetail, pathEntryExists, readRegularFile } from '@graniteflow/core';
import { modelFamily } from '../models';

/**
 * A model folder's JSON file (config.json, generation_config.json) that is missing, not a regular
 * file or not valid JSON. The message names the file and says what to do.
 */
export class ModelFileError extends Error {
  override name = 'ModelFileError';

  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

/** The parsed JSON object of `file`; `remedy` ends the message when the text is not one. */
export function readJsonObject(file: string, remedy: string): Record<string, unknown> {
  let text: string;
  try {
    text = readRegularFile(file).toString('utf8');
  } catch (err) {
    if (err instanceof FileKindError) throw new ModelFileError(file, `${err.message}.`);
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelFileError(file, `${file} is not valid JSON (${jsonErrorDetail(err)}); ${remedy}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ModelFileError(
      file,
      `${file} holds ${value === null ? 'null' : Array.isArray(value) ? 'a list' : `a ${typeof value}`}, not a JSON object; ${remedy}`,
    );
  }
  return value as Record<string, unknown>;
}

/** The raw `config.json` object of a model folder. */
export function readConfigJson(folder: string): Record<string, unknown> {
  const file = path.join(folder, 'config.json');
  if (!pathEntryExists(file)) {
    throw new ModelFileError(file, `${folder} has no config.json: is it a Hugging Face model folder?`);
  }
  return readJsonObject(file, 'the file is corrupt: download or copy it again.');
}

/**
 * The validated config of a model folder and the family of its `model_type`. Throws
 * {@link ModelFileError}, `UnsupportedModelError` or `ConfigError`, each naming the file.
 */
export function readModelConfig(folder: string) {
  const file = path.join(folder, 'config.json');
  const raw = readConfigJson(folder);
  const family = modelFamily(raw.model_type, file);
  return { config: family.parseConfig(raw, file), family, file };
}
