import { previewJson, type Module } from '@graniteflow/core';
import * as granitemoehybrid from './granitemoehybrid';

/** What every supported `model_type` provides (one folder per type). */
export interface ModelTypeModule<C, M extends Module> {
  parseConfig(raw: unknown, source?: string): C;
  createModel(config: C): M;
  convertWeights<T>(weights: Map<string, T>, config: C): Map<string, T>;
}

/** Thrown for a checkpoint whose `model_type` graniteflow does not implement. */
export class UnsupportedModelError extends Error {
  override name = 'UnsupportedModelError';
}

const MODEL_TYPES = {
  granitemoehybrid: {
    parseConfig: granitemoehybrid.parseConfig,
    createModel: (cfg: granitemoehybrid.GraniteMoeHybridConfig) => new granitemoehybrid.GraniteMoeHybridForCausalLM(cfg),
    convertWeights: granitemoehybrid.convertWeights,
  },
} satisfies Record<string, ModelTypeModule<granitemoehybrid.GraniteMoeHybridConfig, granitemoehybrid.GraniteMoeHybridForCausalLM>>;

/** Supported `model_type` values. */
export const SUPPORTED_MODEL_TYPES = Object.keys(MODEL_TYPES);

/** The implementation of a `model_type`, or a clear error naming what is supported. */
export function modelTypeModule(modelType: unknown, source?: string) {
  const key = typeof modelType === 'string' ? modelType : undefined;
  if (key === undefined || !Object.hasOwn(MODEL_TYPES, key)) {
    throw new UnsupportedModelError(
      `${source ? `${source}: ` : ''}model_type ${previewJson(modelType)} is not supported; graniteflow runs ${SUPPORTED_MODEL_TYPES.map((t) => `"${t}"`).join(', ')} (IBM Granite 4.0 hybrid models).`,
    );
  }
  return MODEL_TYPES[key as keyof typeof MODEL_TYPES];
}
