import { previewJson } from '@graniteflow/core';
import { GATED_ACTIVATIONS, isGatedActivation, type GatedActivation } from '@graniteflow/ops-moe';

/** A config.json value that is missing, of the wrong type or inconsistent, named by its key. */
export class ConfigError extends Error {
  override name = 'ConfigError';

  constructor(
    readonly field: string,
    detail: string,
    readonly source?: string,
  ) {
    super(`${source ? `${source}: ` : ''}config field "${field}" ${detail}`);
  }
}

/** A value as an error message shows it: short, whatever the file holds (see `previewJson`). */
export const shown = (v: unknown): string => previewJson(v);

type Raw = Record<string, unknown>;

/**
 * Reads the fields of a raw config.json, taking a family's defaults for missing keys and bounding
 * its size fields by the family's limits; every failure is a {@link ConfigError} naming the key.
 */
export class ConfigReader<Limits extends Record<string, number>> {
  constructor(
    private readonly raw: Raw,
    private readonly defaults: Raw,
    private readonly limits: Limits,
    private readonly source?: string,
  ) {}

  private value(key: string): unknown {
    return this.raw[key] ?? this.defaults[key];
  }

  fail(key: string, detail: string): never {
    throw new ConfigError(key, detail, this.source);
  }

  /** A size field: an integer from `min` to its limit. */
  int(key: keyof Limits & string, min: 0 | 1): number {
    const v = this.value(key);
    const max = this.limits[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(key, `must be an integer from ${min} to ${max}, got ${shown(v)}`);
    }
    return v;
  }

  num(key: string, { positive = false } = {}): number {
    const v = this.value(key);
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) {
      this.fail(key, `must be a ${positive ? 'positive ' : ''}finite number, got ${shown(v)}`);
    }
    return v;
  }

  bool(key: string): boolean {
    const v = this.value(key);
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${shown(v)}`);
    return v;
  }

  str(key: string): string {
    const v = this.value(key);
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${shown(v)}`);
    return v;
  }

  optionalStr(key: string): string | null {
    const v = this.value(key) ?? null;
    if (v !== null && typeof v !== 'string') this.fail(key, `must be a string or null, got ${shown(v)}`);
    return v;
  }

  /** A token id or null; an explicit null in the file overrides the default. */
  optionalId(key: string): number | null {
    const v = this.raw[key] === undefined ? this.defaults[key] : this.raw[key];
    if (v === null || v === undefined) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      this.fail(key, `must be a token id (integer >= 0) or null, got ${shown(v)}`);
    }
    return v;
  }

  /** An activation of the gated MLP, by its HF name (`hidden_act`): one of ops-moe's {@link GATED_ACTIVATIONS}. */
  activation(key: string): GatedActivation {
    const v = this.str(key);
    if (!isGatedActivation(v)) this.fail(key, `is ${shown(v)}; supported: ${GATED_ACTIVATIONS.join(', ')}`);
    return v;
  }

  /** `eos_token_id`: one id, several, or null. */
  eosTokenId(): number | number[] | null {
    const v = this.raw.eos_token_id === undefined ? this.defaults.eos_token_id : this.raw.eos_token_id;
    if (v === null || v === undefined) return null;
    if (Array.isArray(v)) {
      if (!v.every((x) => Number.isInteger(x) && x >= 0)) this.fail('eos_token_id', `must hold token ids, got ${shown(v)}`);
      return v as number[];
    }
    return this.optionalId('eos_token_id');
  }

  /** `rope_theta`, or `rope_parameters.rope_theta` where newer transformers writes it. */
  ropeTheta(): number {
    const params = this.raw.rope_parameters;
    if (params !== null && typeof params === 'object' && 'rope_theta' in params) {
      const theta = (params as Raw).rope_theta;
      if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
        this.fail('rope_parameters.rope_theta', `must be a positive finite number, got ${shown(theta)}`);
      }
      return theta;
    }
    return this.num('rope_theta', { positive: true });
  }

  /** `torch_dtype` (or `dtype`, its newer name) when it is a string; informational only. */
  torchDtype(): string | null {
    const v = this.raw.torch_dtype ?? this.raw.dtype;
    return typeof v === 'string' ? v : null;
  }
}
