import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '@graniteflow/core';
import { ConfigError, countParameters, parseConfig, preset, PRESET_NAMES, estimateMemory, headDim, mambaConvDim } from '../src';
import { GOLDEN } from './golden_fixtures';

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
    const cfg = parseConfig({ model_type: 'granitemoehybrid', hidden_size: 64, num_hidden_layers: 2, mamba_n_heads: 8, num_attention_heads: 4 });
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
    [{ hidden_act: 'gelu' }, 'hidden_act', /only "silu"/],
    [{ num_local_experts: 4, num_experts_per_tok: 5 }, 'num_experts_per_tok', /between 1 and num_local_experts/],
  ])('rejects %j naming the field', (patch, field, message) => {
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
  });
});

describe('presets', () => {
  // Model skeletons allocate only a few small tensors (A_log); parameter counting reads shapes.
  beforeAll(() => initBackend('cpu'));

  // Totals computed in GRANITE.md §8 from the §6.2 shapes (tied embeddings, released bias flags).
  it.each([
    ['granite-4.0-h-small', 32_207_337_984, 8_803_121_664],
    ['granite-4.0-h-tiny', 6_939_037_248, 1_465_470_528],
    ['granite-4.0-h-micro', 3_191_396_096, 3_191_396_096],
    ['granite-4.0-h-1b', 1_461_538_368, 1_461_538_368],
    ['granite-4.0-h-350m', 340_332_224, 340_332_224],
  ])('%s has %i parameters, %i active', (name, total, active) => {
    expect(countParameters(preset(name))).toEqual({ total, active });
  });

  it('every preset parses, including the all-attention models', () => {
    for (const name of PRESET_NAMES) expect(preset(name).vocab_size).toBe(100352);
    expect(preset('ibm-granite/granite-4.0-micro').position_embedding_type).toBe('rope');
    expect(() => preset('granite-5')).toThrow(/No preset named "granite-5"/);
  });

  it('estimates state and KV sizes as GRANITE.md §5 tabulates', () => {
    // h-micro: 4096 KV floats per token; Mamba state 19,501,056 floats with HF's K-entry conv state,
    // ours keeps K−1 entries: 36 layers × 4352 channels fewer.
    const e = estimateMemory(preset('granite-4.0-h-micro'), { contextLength: 1000 });
    expect(e.kvBytesPerToken).toBe(4 * 4096);
    expect(e.stateBytesPerSequence).toBe(4 * (19_501_056 - 36 * 4352));
    expect(e.weightBytes).toBe(4 * 3_191_396_096);
  });
});
