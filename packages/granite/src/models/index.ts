import { previewJson } from '@graniteflow/core';
import type { CausalLMConfig } from './causal_lm';
import * as families from './families';
import type { ModelFamily } from './model_family';

/** Thrown for a checkpoint whose `model_type` graniteflow does not implement. */
export class UnsupportedModelError extends Error {
  override name = 'UnsupportedModelError';
}

const MODEL_FAMILIES: ReadonlyMap<string, ModelFamily> = new Map(
  Object.values(families).map((family: ModelFamily) => [family.modelType, family]),
);

/** Supported `model_type` values. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = [...MODEL_FAMILIES.keys()];

/** The family of a `model_type`, or an {@link UnsupportedModelError} naming what is supported. */
export function modelFamily(modelType: unknown, source?: string): ModelFamily {
  const family = typeof modelType === 'string' ? MODEL_FAMILIES.get(modelType) : undefined;
  if (family === undefined) {
    const supported = [...MODEL_FAMILIES.values()].map((f) => `"${f.modelType}" (${f.description})`).join(', ');
    throw new UnsupportedModelError(
      `${source ? `${source}: ` : ''}model_type ${previewJson(modelType)} is not supported; graniteflow runs ${supported}.`,
    );
  }
  return family;
}

/** The family a parsed config belongs to. */
export function familyOf(config: CausalLMConfig): ModelFamily {
  return modelFamily(config.model_type);
}

/** Names of every family's presets. */
export function presetNames(): string[] {
  return [...MODEL_FAMILIES.values()].flatMap((f) => [...f.presetNames]);
}

/**
 * The config of a released model of any family, e.g. `presetConfig('granite-4.0-h-tiny')`; accepts
 * `ibm-granite/…` too. Throws naming every known preset.
 */
export function presetConfig(name: string): CausalLMConfig {
  const key = name.replace(/^ibm-granite\//, '');
  const family = [...MODEL_FAMILIES.values()].find((f) => f.presetNames.includes(key));
  if (family === undefined) throw new Error(`No preset named "${name}"; known: ${presetNames().join(', ')}.`);
  return family.preset(key);
}
