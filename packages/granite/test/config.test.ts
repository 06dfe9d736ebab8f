import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '@graniteflow/core';
import {
  assertFitsInMemory,
  CONFIG_LIMITS,
  ConfigError,
  countParameters,
  formatBytes,
  GraniteMoeHybridForCausalLM,
  InsufficientMemoryError,
  parseConfig,
  preset,
  PRESET_NAMES,
  estimateMemory,
  headDim,
  mambaConvDim,
  modelFamily,
  UnsupportedModelError,
} from '../src';
import { GOLDEN } from './golden_fixtures';

/** A value nested 20,000 lists deep: JSON.parse reads it, a recursive JSON.stringify overflows the stack. */
const DEEP: unknown = JSON.parse('['.repeat(20_000) + ']'.repeat(20_000));

const goldenConfig = (name: string) => JSON.parse(fs.readFileSync(path.join(GOLDEN, name, 'config.json'), 'utf8'));

describe('parseConfig', () => {
  it('reads the golden configs with HF keys verbatim', () => {
    const cfg = parseConfig(goldenConfig('tiny_moe'));
    expect(cfg.layer_types).toEqual(['mamba', 'mamba', 'attention', 'mamba', 'mamba', 'attention']);
    expect(cfg.mamba_d_head).toBe(16);
    expect(cfg.mamba_n_groups).toBe(2);
    expect(cfg.time_step_limit).toEqual([0, Infinity]);
    expect(headDim(cfg)).toBe(16);
    expect(mambaConvDim(cfg)).toBe(128 + 2 * 2 * 16);
    expect(cfg.torch_dtype).toBe('bfloat16');
  });

  it('accepts the aliases and forms of older and newer configs', () => {
    const raw = goldenConfig('micro_dense');
    raw.layers_block_type = raw.layer_types;
    delete raw.layer_types;
    raw.mamba_d_head = 'auto';
    delete raw.rope_theta;
    raw.rope_parameters = { rope_type: 'default', rope_theta: 5e5 };
    raw.time_step_limit = [0.001, 100];
    raw.eos_token_id = [317, 318];
    const cfg = parseConfig(raw);
    expect(cfg.layer_types[3]).toBe('attention');
    expect(cfg.mamba_d_head).toBe(16);
    expect(cfg.rope_theta).toBe(5e5);
    expect(cfg.time_step_limit).toEqual([0.001, 100]);
    expect(cfg.eos_token_id).toEqual([317, 318]);
  });

  it('applies HF defaults for missing keys (layer_types → all mamba)', () => {
    const cfg = parseConfig({
      model_type: 'granitemoehybrid',
      hidden_size: 64,
      num_hidden_layers: 2,
      mamba_n_heads: 8,
      num_attention_heads: 4,
    });
    expect(cfg.layer_types).toEqual(['mamba', 'mamba']);
    expect(cfg.rms_norm_eps).toBe(1e-6);
    expect(cfg.num_key_value_heads).toBe(4);
  });

  it.each([
    [{ layer_types: ['mamba', 'conv', 'mamba', 'mamba', 'mamba', 'mamba'] }, 'layer_types', /entry 1 is "conv"/],
    [{ layer_types: ['mamba'] }, 'layer_types', /has 1 entries but num_hidden_layers is 6/],
    [{ hidden_size: 'big' }, 'hidden_size', /must be an integer/],
    [{ mamba_d_head: 10 }, 'mamba_d_head', /must equal mamba_expand × hidden_size = 128/],
    [{ num_key_value_heads: 3 }, 'num_key_value_heads', /must divide num_attention_heads/],
    [{ mamba_n_groups: 3 }, 'mamba_n_groups', /must divide mamba_n_heads/],
    [{ model_type: 'llama' }, 'model_type', /handles "granitemoehybrid"/],
    [{ hidden_act: 'tanh' }, 'hidden_act', /is "tanh"; supported: silu, gelu, gelu_pytorch_tanh, gelu_new, relu/],
    [{ hidden_act: 'gelu', num_local_experts: 4, num_experts_per_tok: 2 }, 'hidden_act', /routed experts run SwiGLU only/],
    [{ num_local_experts: 4, num_experts_per_tok: 5 }, 'num_experts_per_tok', /between 1 and num_local_experts/],
    // biome-ignore lint/correctness/noPrecisionLoss: a literal that overflows to Infinity is the case under test
    [{ rope_parameters: { rope_theta: 1e400 } }, 'rope_parameters.rope_theta', /must be a positive finite number, got Infinity/],
  ])('rejects %j naming the field', (patch, field, message) => {
    expectRejected(patch, field, message);
  });

  // Values found by the fuzzer (npm run fuzz): messages used JSON.stringify, which overflows the stack.
  it.each([
    [
      'a hidden_size nested 20,000 deep',
      { hidden_size: DEEP },
      'hidden_size',
      /must be an integer from 1 to 65536, got \[\[\[\[\[\.\.\.\]\]\]\]\]$/,
    ],
    ['a model_type nested 20,000 deep', { model_type: DEEP }, 'model_type', /is \[\[\[\[\[\.\.\.\]\]\]\]\]; this loader handles/],
    [
      'a layer_types entry nested 20,000 deep',
      { layer_types: [DEEP, 1, 2, 3, 4, 5] },
      'layer_types',
      /entry 0 is \[\[\[\[\[\.\.\.\]\]\]\]\]; expected "mamba"/,
    ],
    ['an eos_token_id of 100,000 characters', { eos_token_id: 'x'.repeat(100_000) }, 'eos_token_id', /got "x{76}\.\.\.$/],
  ])('rejects %s in a short message naming the field', (_label, patch, field, message) => {
    expectRejected(patch, field, message);
  });

  function expectRejected(patch: Record<string, unknown>, field: string, message: RegExp): void {
    const raw = { ...goldenConfig('micro_dense'), ...patch };
    let err: unknown;
    try {
      parseConfig(raw, 'x/config.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe(field);
    expect((err as Error).message).toMatch(/^x\/config.json: config field/);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message.length).toBeLessThan(300);
  }
});

describe('size limits', () => {
  const base = () => {
    const raw = goldenConfig('micro_dense');
    delete raw.layer_types;
    return raw;
  };

  it('refuses a million layers by name, at once, before sizing anything by it', () => {
    const started = Date.now();
    let err: unknown;
    try {
      parseConfig({ ...base(), num_hidden_layers: 1_000_000 }, 'big/config.json');
    } catch (e) {
      err = e;
    }
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('num_hidden_layers');
    expect((err as Error).message).toBe('big/config.json: config field "num_hidden_layers" must be an integer from 1 to 4096, got 1000000');
  });

  it.each([
    ['vocab_size', 4_194_304],
    ['hidden_size', 65_536],
    ['num_hidden_layers', 4096],
    ['num_attention_heads', 16_384],
    ['num_key_value_heads', 16_384],
    ['intermediate_size', 262_144],
    ['shared_intermediate_size', 262_144],
    ['num_local_experts', 4096],
    ['num_experts_per_tok', 4096],
    ['mamba_n_heads', 16_384],
    ['mamba_d_head', 65_536],
    ['mamba_expand', 64],
    ['mamba_d_state', 16_384],
    ['mamba_n_groups', 16_384],
    ['mamba_d_conv', 1024],
    ['mamba_chunk_size', 65_536],
    ['max_position_embeddings', 1_073_741_824],
  ])('%s above %i is refused naming the field and the range', (field, max) => {
    expect(CONFIG_LIMITS[field as keyof typeof CONFIG_LIMITS]).toBe(max);
    for (const value of [max + 1, 1e300]) {
      let err: unknown;
      try {
        parseConfig({ ...base(), [field]: value });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe(field);
      expect((err as Error).message).toMatch(/must be an integer from [01] to/);
      expect((err as Error).message).toContain(` to ${max}, got ${String(value)}`);
    }
  });

  it('an unsupported model_type of any shape is named in a short message', () => {
    // Names every object inherits (the fuzzer found "__proto__" passing an `in` check).
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(() => modelFamily(name, 'x/config.json')).toThrow(UnsupportedModelError);
    }
    expect(() => modelFamily(DEEP, 'x/config.json')).toThrow(UnsupportedModelError);
    expect(() => modelFamily(DEEP, 'x/config.json')).toThrow(/^x\/config\.json: model_type \[\[\[\[\[\.\.\.\]\]\]\]\] is not supported/);
  });

  it('an "auto" mamba_d_head is bounded like an explicit one', () => {
    const raw = { ...base(), hidden_size: 65_536, mamba_expand: 64, mamba_n_heads: 1, mamba_d_head: 'auto' };
    expect(() => parseConfig(raw)).toThrow(/config field "mamba_d_head" is "auto", giving .* = 4194304, more than 65536/);
  });

  it('the largest config within the limits is sized from its numbers in milliseconds and refused', () => {
    const raw = {
      ...base(),
      num_hidden_layers: 4096,
      hidden_size: 65_536,
      vocab_size: 4_194_304,
      num_attention_heads: 16_384,
      num_key_value_heads: 16_384,
      mamba_n_heads: 16_384,
      mamba_d_head: 'auto',
      mamba_expand: 64,
      mamba_d_state: 16_384,
      mamba_n_groups: 16_384,
      mamba_d_conv: 1024,
      num_local_experts: 4096,
      num_experts_per_tok: 4096,
      intermediate_size: 262_144,
      shared_intermediate_size: 262_144,
      tie_word_embeddings: false,
      layer_types: Array.from({ length: 4096 }, (_, i) => (i % 2 ? 'attention' : 'mamba')),
    };
    const started = Date.now();
    const estimate = estimateMemory(parseConfig(raw), { contextLength: 1 << 30, batchSize: 1 << 20 });
    expect(Date.now() - started).toBeLessThan(200);
    expect(Number.isFinite(estimate.totalBytes)).toBe(true);
    // 4096 layers × 4096 experts × 3 × 65536 × 262144 expert weights alone: about 8.6e17.
    expect(estimate.parameters).toBeGreaterThan(4096 * 4096 * 3 * 65_536 * 262_144);
    expect(() => assertFitsInMemory(estimate, 'cpu', 1024 ** 4)).toThrow(InsufficientMemoryError);
    expect(() => assertFitsInMemory(estimate, 'cpu', 1024 ** 4)).toThrow(/needs about over 1024 EiB|needs about [\d.]+ EiB/);
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [3 * 1024 ** 3, '3.0 GiB'],
    [2 * 1024 ** 5, '2.0 PiB'],
    [1024 ** 6, '1.0 EiB'],
    [1024 ** 7, 'over 1024 EiB'],
    [Number.MAX_VALUE, 'over 1024 EiB'],
    [Infinity, 'over 1024 EiB'],
    [NaN, 'an unknown size'],
  ])('%d bytes print as %s', (n, text) => {
    expect(formatBytes(n)).toBe(text);
  });
});

describe('presets', () => {
  // Model skeletons allocate only a few small tensors (A_log); parameter counting reads shapes.
  beforeAll(() => initBackend('cpu'));

  // Totals as the model guide tabulates them (Released models), computed from the checkpoint
  // shapes (tied embeddings, released bias flags).
  it.each([
    ['granite-4.0-h-small', 32_207_337_984, 8_803_121_664],
    ['granite-4.0-h-tiny', 6_939_037_248, 1_465_470_528],
    ['granite-4.0-h-micro', 3_191_396_096, 3_191_396_096],
    ['granite-4.0-h-1b', 1_461_538_368, 1_461_538_368],
    ['granite-4.0-h-350m', 340_332_224, 340_332_224],
  ])('%s has %i parameters, %i active', (name, total, active) => {
    expect(countParameters(preset(name))).toEqual({ total, active });
  });

  // The counts come from a formula (memory.ts); the module tree is the model itself. They must agree.
  it.each([...PRESET_NAMES.map((n) => ['preset', n]), ...['micro_dense', 'tiny_moe', 'chat_tiny'].map((n) => ['golden', n])])(
    'the counted parameters of %s %s equal those of its module tree',
    (kind, name) => {
      const cfg = kind === 'preset' ? preset(name) : parseConfig(goldenConfig(name));
      const model = new GraniteMoeHybridForCausalLM(cfg);
      expect(countParameters(cfg).total).toBe(model.parameterCount());
      model.dispose();
    },
  );

  it('the count agrees with the module tree on every bias flag, untied heads and a hybrid MoE', () => {
    const cfg = parseConfig({
      ...goldenConfig('tiny_moe'),
      attention_bias: true,
      mamba_proj_bias: true,
      mamba_conv_bias: false,
      tie_word_embeddings: false,
    });
    const model = new GraniteMoeHybridForCausalLM(cfg);
    expect(countParameters(cfg).total).toBe(model.parameterCount());
    model.dispose();
  });

  it('every preset parses, including the all-attention models', () => {
    for (const name of PRESET_NAMES) expect(preset(name).vocab_size).toBe(100352);
    expect(preset('ibm-granite/granite-4.0-micro').position_embedding_type).toBe('rope');
    expect(() => preset('granite-5')).toThrow(/No preset named "granite-5"/);
  });

  it('estimates state and KV sizes as the model guide tabulates (Caches and state size)', () => {
    // h-micro: 4096 KV floats per token; Mamba state 19,501,056 floats with HF's K-entry conv state,
    // ours keeps K−1 entries: 36 layers × 4352 channels fewer.
    const e = estimateMemory(preset('granite-4.0-h-micro'), { contextLength: 1000 });
    expect(e.kvBytesPerToken).toBe(4 * 4096);
    expect(e.stateBytesPerSequence).toBe(4 * (19_501_056 - 36 * 4352));
    expect(e.weightBytes).toBe(4 * 3_191_396_096);
  });
});
