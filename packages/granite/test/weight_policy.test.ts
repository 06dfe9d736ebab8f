// The mixed-precision policy and the memory estimate per dtype and backend (no backend needed:
// both work from names, shapes and configs).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, type WeightDtype } from '@graniteflow/core';
import {
  assertFitsInMemory,
  backendMemoryLimit,
  estimateMemory,
  fitsBackend,
  GraniteMoeHybridForCausalLM,
  InsufficientMemoryError,
  parameterShapes,
  parseConfig,
  planWeightDtypes,
  preset,
  PRESET_NAMES,
  WASM_TENSOR_BUDGET,
  WeightPolicyError,
  type GraniteMoeHybridConfig,
} from '../src';
import { GOLDEN_DIR } from './helpers/golden';

const GiB = 1024 ** 3;

function goldenConfig(name: string): GraniteMoeHybridConfig {
  return parseConfig(JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, name, 'config.json'), 'utf8')));
}

/** The issue's list, written out again: the matrices tokens are multiplied by, the router excepted. */
const MATRICES = [
  'mamba.in_proj.weight',
  'mamba.out_proj.weight',
  'self_attn.q_proj.weight',
  'self_attn.k_proj.weight',
  'self_attn.v_proj.weight',
  'self_attn.o_proj.weight',
  'shared_mlp.input_linear.weight',
  'shared_mlp.output_linear.weight',
  'block_sparse_moe.input_linear.weight',
  'block_sparse_moe.output_linear.weight',
];
function expectedDtype(name: string, dtype: WeightDtype): WeightDtype {
  const matrix = name === 'model.embed_tokens.weight' || name === 'lm_head.weight' || MATRICES.some((m) => name.endsWith(`.${m}`));
  return matrix ? dtype : 'f32';
}

function shapesOf(cfg: GraniteMoeHybridConfig): [string, number[]][] {
  return parameterShapes(cfg);
}

describe('the dtype policy', () => {
  const untiedWithBiases = () =>
    parseConfig({
      ...JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, 'tiny_moe', 'config.json'), 'utf8')),
      attention_bias: true,
      mamba_proj_bias: true,
      tie_word_embeddings: false,
    });

  it.each(['q4_0', 'q8_0', 'bf16'] as const)(
    '%s packs the matrices and the (tied or untied) head; router, norms, A_log, D, dt_bias, conv1d and biases stay f32',
    (dtype) => {
      for (const cfg of [goldenConfig('tiny_moe'), goldenConfig('micro_dense'), untiedWithBiases(), preset('granite-4.0-h-tiny')]) {
        const plan = planWeightDtypes(shapesOf(cfg), { dtype });
        for (const [name, held] of plan.dtypes) expect([name, held]).toEqual([name, expectedDtype(name, dtype)]);
        const kept = [...plan.dtypes].filter(([n]) => /router|norm|A_log|\.D$|dt_bias|conv1d|\.bias$/.test(n));
        expect(kept.length).toBeGreaterThan(0);
        for (const [name, held] of kept) expect([name, held]).toEqual([name, 'f32']);
        expect(plan.notes).toEqual([]);
      }
      const untied = planWeightDtypes(shapesOf(untiedWithBiases()), { dtype }).dtypes;
      expect(untied.get('lm_head.weight')).toBe(dtype);
      expect(untied.get('model.layers.0.mamba.in_proj.bias')).toBe('f32');
      expect(untied.get('model.layers.2.self_attn.q_proj.bias')).toBe('f32');
    },
  );

  it('f32 (the default) packs nothing', () => {
    const plan = planWeightDtypes(shapesOf(goldenConfig('tiny_moe')));
    expect(plan.dtype).toBe('f32');
    expect(new Set(plan.dtypes.values())).toEqual(new Set(['f32']));
  });

  it('keeps f32, with a note, a weight whose rows are not whole blocks, and the partner of such an expert weight', () => {
    // Shared MLP of 40: its output rows hold 40 weights. Experts of 40: output_linear [E, 64, 40].
    const cfg = parseConfig({
      ...JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, 'tiny_moe', 'config.json'), 'utf8')),
      shared_intermediate_size: 40,
      intermediate_size: 40,
    });
    const plan = planWeightDtypes(shapesOf(cfg), { dtype: 'q4_0' });
    expect(plan.dtypes.get('model.layers.0.shared_mlp.output_linear.weight')).toBe('f32');
    expect(plan.dtypes.get('model.layers.0.shared_mlp.input_linear.weight')).toBe('q4_0'); // rows of 64
    expect(plan.dtypes.get('model.layers.0.block_sparse_moe.output_linear.weight')).toBe('f32');
    expect(plan.dtypes.get('model.layers.0.block_sparse_moe.input_linear.weight')).toBe('f32');
    expect(plan.notes).toContain(
      'model.layers.0.shared_mlp.output_linear.weight [64,40] stays f32: its rows of 40 weights are not whole q4_0 blocks of 32.',
    );
    expect(plan.notes).toContain(
      'model.layers.0.block_sparse_moe.input_linear.weight [8,80,64] stays f32 like model.layers.0.block_sparse_moe.output_linear.weight: the experts run with both weights packed or both float32.',
    );
    // bf16 has no blocks: the same rows pack.
    expect(planWeightDtypes(shapesOf(cfg), { dtype: 'bf16' }).dtypes.get('model.layers.0.shared_mlp.output_linear.weight')).toBe('bf16');
  });

  it('overrides by exact name beat globs, the longest glob wins, and a function sees name, shape and the policy dtype', () => {
    const shapes = shapesOf(goldenConfig('tiny_moe'));
    const plan = planWeightDtypes(shapes, {
      dtype: 'q4_0',
      dtypeOverrides: {
        '*': 'bf16',
        '*.mamba.in_proj.weight': 'q8_0',
        'model.layers.0.mamba.in_proj.weight': 'f32',
        'model.embed_tokens.weight': 'q8_0',
      },
    });
    expect(plan.dtypes.get('model.layers.0.mamba.in_proj.weight')).toBe('f32');
    expect(plan.dtypes.get('model.layers.1.mamba.in_proj.weight')).toBe('q8_0');
    expect(plan.dtypes.get('model.embed_tokens.weight')).toBe('q8_0');
    expect(plan.dtypes.get('model.layers.0.mamba.A_log')).toBe('bf16'); // '*' reaches everything, as asked
    const seen: [string, readonly number[], WeightDtype][] = [];
    const byFunction = planWeightDtypes(shapes, {
      dtype: 'q8_0',
      dtypeOverrides: (name, shape, policy) => {
        seen.push([name, shape, policy]);
        return name.includes('router') ? 'q8_0' : policy;
      },
    });
    expect(seen).toContainEqual(['model.layers.0.block_sparse_moe.router.layer.weight', [8, 64], 'f32']);
    expect(seen).toContainEqual(['model.embed_tokens.weight', [320, 64], 'q8_0']);
    expect(byFunction.dtypes.get('model.layers.0.block_sparse_moe.router.layer.weight')).toBe('q8_0');
  });

  it('refuses an unknown dtype and an override that matches nothing, by name', () => {
    const shapes = shapesOf(goldenConfig('tiny_moe'));
    expect(() => planWeightDtypes(shapes, { dtype: 'q5' as WeightDtype })).toThrow(WeightPolicyError);
    expect(() => planWeightDtypes(shapes, { dtype: 'q5' as WeightDtype })).toThrow('dtype must be one of f32, bf16, q8_0, q4_0; got "q5".');
    expect(() => planWeightDtypes(shapes, { dtypeOverrides: { '*.mamba.inproj.weight': 'q8_0' } })).toThrow(
      /dtypeOverrides "\*\.mamba\.inproj\.weight" matches no parameter of this model\. Give parameter names as in the checkpoint \(e\.g\. "model\.embed_tokens\.weight"\)/,
    );
    expect(() => planWeightDtypes(shapes, { dtypeOverrides: { 'model.norm.weight': 'int4' as WeightDtype } })).toThrow(
      'dtypeOverrides["model.norm.weight"] must be one of f32, bf16, q8_0, q4_0; got "int4".',
    );
  });
});

describe('parameterShapes', () => {
  beforeAll(() => initBackend('cpu'));

  // The estimate plans dtypes over these names; loading plans over the module tree. They must agree.
  it.each([
    ...PRESET_NAMES.map((n) => ['preset', n]),
    ...['micro_dense', 'tiny_moe', 'chat_tiny'].map((n) => ['golden', n]),
    ['untied with biases', 'tiny_moe'],
  ])('of %s %s equal the module tree, name for name and shape for shape', (kind, name) => {
    const base = kind === 'preset' ? preset(name) : goldenConfig(name);
    const cfg =
      kind === 'untied with biases'
        ? { ...base, attention_bias: true, mamba_proj_bias: true, mamba_conv_bias: false, tie_word_embeddings: false }
        : base;
    const model = new GraniteMoeHybridForCausalLM(cfg);
    expect(shapesOf(cfg)).toEqual([...model.namedParameters()].map(([n, p]) => [n, [...p.shape]]));
    model.dispose();
  });
});

describe('the memory estimate per dtype and backend', () => {
  // granite-4.0-h-micro by hand (model guide: Released models): H 2048, vocab 100352 (tied), 36
  // Mamba layers of 64 heads × 64 (D_in 4096), d_state 128, one group, conv 4; 4 attention layers
  // of 32 × 64 query and 8 × 64 key-value heads; a shared MLP of 8192 on every layer.
  const H = 2048;
  const q4 = (rows: number, cols: number) => rows * (cols / 32) * 18;
  const q8 = (rows: number, cols: number) => rows * (cols / 32) * 34;
  const f32 = (n: number) => 4 * n;
  const convDim = 4096 + 2 * 128;
  const projDim = 2 * 4096 + 2 * 128 + 64;
  const microBytes = (m: (rows: number, cols: number) => number) =>
    m(100352, H) + // tied embedding = head
    36 * (m(projDim, H) + m(H, 4096) + f32(convDim * 4 + convDim + 3 * 64 + 4096)) +
    4 * (m(2048, H) + 2 * m(512, H) + m(H, 2048)) +
    40 * (f32(2 * H) + m(2 * 8192, H) + m(H, 8192)) +
    f32(H);

  it('holds the matrices of granite-4.0-h-micro at q4_0 and q8_0 bytes, the rest at float32', () => {
    expect(microBytes(q4)).toBe(1_798_953_984); // the anchor's llama.cpp Q4_0 file: 1.80 GB
    expect(estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'q4_0' }).weightBytes).toBe(microBytes(q4));
    expect(estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'q8_0' }).weightBytes).toBe(microBytes(q8));
    expect(estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'bf16' }).weightBytes).toBe(microBytes((r, c) => 2 * r * c));
    const e = estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'q4_0', contextLength: 1000 });
    expect(e.weightBytes).toBe(e.weightBytesByDtype.q4_0);
    expect(e.weightBytesByDtype.f32).toBe(4 * 3_191_396_096);
    expect(e.totalBytes).toBe(e.weightBytes + e.stateBytesPerSequence + 1000 * e.kvBytesPerToken + e.activationBytes);
    // Per token of a 512-token chunk: 4 × 2048 residual floats, the Mamba layer's 2 × 8512 in-projection
    // floats + 4352 conv + 3 × 4096 scan / norm (wider than attention's 5120), the shared MLP's 3 × 8192;
    // plus one row of 100352 logits.
    expect(e.activationBytes).toBe(4 * (512 * (8192 + 2 * 8512 + 4352 + 3 * 4096 + 3 * 8192) + 100_352));
    // Everything but norms, conv, A_log / D / dt_bias is packed.
    expect(e.packedParameters).toBe(3_191_396_096 - 36 * (convDim * 5 + 3 * 64 + 4096) - 40 * 2 * H - H);
  });

  // Without overrides the estimate folds the layers of a kind into one entry; with one it plans
  // every name. Both must give the same figures.
  it.each([...PRESET_NAMES, 'golden tiny_moe'])('%s: folding the layers changes no figure', (name) => {
    const cfg = name.startsWith('golden') ? goldenConfig('tiny_moe') : preset(name);
    for (const dtype of ['f32', 'bf16', 'q8_0', 'q4_0'] as const) {
      const folded = estimateMemory(cfg, { dtype });
      const perName = estimateMemory(cfg, { dtype, dtypeOverrides: { 'model.norm.weight': 'f32' } });
      expect({ ...perName, notes: [] }).toEqual({ ...folded, notes: [] });
    }
  });

  it('an override changes the estimate as it changes the load', () => {
    const plain = estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'q4_0' });
    const embeddingAtQ8 = estimateMemory(preset('granite-4.0-h-micro'), {
      dtype: 'q4_0',
      dtypeOverrides: { 'model.embed_tokens.weight': 'q8_0' },
    });
    expect(embeddingAtQ8.weightBytes - plain.weightBytes).toBe(q8(100352, H) - q4(100352, H));
  });

  it('full H-Micro fits wasm at q4_0 but not at f32, bf16 or q8_0; the refusal names dtype and backend and the dtype that fits', () => {
    const micro = preset('granite-4.0-h-micro');
    expect(fitsBackend(estimateMemory(micro, { dtype: 'q4_0' }), 'wasm')).toBe(true);
    for (const dtype of ['f32', 'bf16', 'q8_0'] as const) expect(fitsBackend(estimateMemory(micro, { dtype }), 'wasm')).toBe(false);
    expect(backendMemoryLimit('wasm').bytes).toBe(WASM_TENSOR_BUDGET);
    const f32Estimate = estimateMemory(micro, { dtype: 'f32' });
    expect(() => assertFitsInMemory(f32Estimate, 'wasm', 64 * GiB, 64 * GiB)).toThrow(InsufficientMemoryError);
    const message = (() => {
      try {
        assertFitsInMemory(f32Estimate, 'wasm', 64 * GiB, 64 * GiB);
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })();
    expect(message).toMatch(
      /^This model at dtype f32 needs about 12\.2 GiB \(11\.9 GiB of float32 weights \(3\.19 B parameters\) \+ [\d.]+ MiB of state and KV cache for 1 × 4096 tokens \+ 130\.1 MiB of activations for a prefill chunk of 512 tokens\), more than the wasm backend can hold \(its heap stops at 4 GiB, about 3\.0 GiB of tensors\)\./,
    );
    expect(message).toMatch(/At dtype q4_0 it needs about 1\.9 GiB, which fits: load it with dtype 'q4_0' \(--dtype q4_0\)\./);
    expect(message).toMatch(
      /At f32 it fits the (native backend \(--backend native\) or the )?cpu backend \(--backend cpu.*\), which may use up to 51\.2 GiB of this machine's memory\./,
    );
    expect(assertFitsInMemory(estimateMemory(micro, { dtype: 'q4_0' }), 'wasm', 64 * GiB, 64 * GiB)).toBeUndefined();
  });

  it('cpu and native may fill 80% of the machine; below that they only warn when free memory is short', () => {
    const micro = estimateMemory(preset('granite-4.0-h-micro'), { dtype: 'f32' }); // 12.2 GiB
    for (const backend of ['cpu', 'native']) {
      expect(backendMemoryLimit(backend, 16 * GiB).bytes).toBe(Math.floor(0.8 * 16 * GiB));
      expect(fitsBackend(micro, backend, 16 * GiB)).toBe(true); // 12.0 ≤ 12.8 GiB
      expect(fitsBackend(micro, backend, 14 * GiB)).toBe(false); // 12.0 > 11.2 GiB
      expect(assertFitsInMemory(micro, backend, 16 * GiB, 16 * GiB)).toBeUndefined();
      expect(assertFitsInMemory(micro, backend, 4 * GiB, 16 * GiB)).toBe(
        "This model at dtype f32 needs about 12.2 GiB but only 4.0 GiB of this machine's 16.0 GiB of memory is free now: loading may swap, or the system may stop the process. Close other programs, or choose a smaller dtype.",
      );
      // On 8 GiB (6.4 usable) f32 and nothing else is refused, and bf16 (6.1 GiB) is the dtype suggested.
      expect(() => assertFitsInMemory(micro, backend, 8 * GiB, 8 * GiB)).toThrow(
        new RegExp(
          `more than the ${backend} backend can hold \\(80% of this machine's 8\\.0 GiB of memory, 6\\.4 GiB\\)\\. At dtype bf16 it needs about 6\\.2 GiB, which fits`,
        ),
      );
    }
    // Nothing fits: say so, with the smallest figure.
    const small = estimateMemory(preset('granite-4.0-h-small'), { dtype: 'q8_0' });
    expect(() => assertFitsInMemory(small, 'cpu', 8 * GiB, 8 * GiB)).toThrow(
      /at dtype q8_0 .*Even at q4_0 it needs about 1[67]\.\d GiB: choose a smaller model, lower the context length, or use a machine with more memory\./,
    );
  });
});
