/**
 * The second model family, `granite` (transformers' GraniteForCausalLM, the dense Granite
 * transformer), through the same registry and `CausalLM` interface as `granitemoehybrid`. Its
 * oracle: an all-attention Granite 4.0 model (granitemoehybrid with RoPE, the layout of
 * granite-4.0-micro, checked against the golden fixtures elsewhere) holding the same weights, with
 * the shared MLP's packed gate/up split into gate_proj and up_proj.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeSafetensors, type WritableTensor } from '@graniteflow/core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import {
  configJson,
  ConfigError,
  countParameters,
  estimateMemory,
  fromPretrained,
  modelFamily,
  parameterShapes,
  parseConfig,
  saveCheckpoint,
  SUPPORTED_MODEL_TYPES,
  UnsupportedModelError,
  writeRandomCheckpoint,
  type CausalLMConfig,
} from '../src';
import { createPrng } from '../src/generation/prng';
import { GraniteForCausalLM, parseGraniteConfig, type GraniteConfig } from '../src/models/granite';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-granite-family-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SIZES = { vocab_size: 96, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2 };
const SCALARS = {
  embedding_multiplier: 3,
  residual_multiplier: 0.5,
  attention_multiplier: 0.2,
  logits_scaling: 2.5,
  rms_norm_eps: 1e-5,
  rope_theta: 10_000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 1,
  pad_token_id: 0,
};
const INTERMEDIATE = 40;

function graniteConfig(hiddenAct: string): GraniteConfig {
  return parseGraniteConfig({ model_type: 'granite', ...SIZES, ...SCALARS, intermediate_size: INTERMEDIATE, hidden_act: hiddenAct });
}

/** The same model as a granitemoehybrid config: every layer attention, RoPE, dense shared MLP. */
function hybridConfig(hiddenAct: string) {
  return parseConfig({
    model_type: 'granitemoehybrid',
    ...SIZES,
    ...SCALARS,
    layer_types: ['attention', 'attention', 'attention'],
    position_embedding_type: 'rope',
    num_local_experts: 0,
    num_experts_per_tok: 0,
    intermediate_size: INTERMEDIATE,
    shared_intermediate_size: INTERMEDIATE,
    mamba_n_heads: 8,
    hidden_act: hiddenAct,
  });
}

/** Random float32 weights for every parameter of `cfg`; norms near 1 so a miswired one shows. */
function randomWeights(cfg: CausalLMConfig, seed: number): Map<string, Float32Array> {
  const rng = createPrng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of parameterShapes(cfg)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isNorm = name.endsWith('norm.weight');
    for (let i = 0; i < data.length; i++) data[i] = (isNorm ? 1 : 0) + (isNorm ? 0.2 : 0.3) * (2 * rng.nextFloat() - 1);
    out.set(name, data);
  }
  return out;
}

/** The hybrid layout's weights renamed into the granite layout (gate and up halves split). */
function toGraniteLayout(weights: Map<string, Float32Array>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, data] of weights) {
    const packed = /^(model\.layers\.\d+)\.shared_mlp\.input_linear\.weight$/.exec(name);
    if (packed) {
      out.set(`${packed[1]}.mlp.gate_proj.weight`, data.slice(0, data.length / 2));
      out.set(`${packed[1]}.mlp.up_proj.weight`, data.slice(data.length / 2));
    } else {
      out.set(name.replace('.shared_mlp.output_linear.', '.mlp.down_proj.'), data);
    }
  }
  return out;
}

function writeFolder(dir: string, cfg: CausalLMConfig, weights: Map<string, Float32Array>): string {
  fs.mkdirSync(dir, { recursive: true });
  const shapes = new Map(parameterShapes(cfg));
  const tensors = new Map<string, WritableTensor>();
  for (const [name, data] of weights) tensors.set(name, { shape: shapes.get(name)!, data, dtype: 'F32' });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' } });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson(cfg)));
  return dir;
}

describe('the model registry', () => {
  test('serves both families, and an unknown model_type names every supported one', () => {
    expect([...SUPPORTED_MODEL_TYPES].sort()).toEqual(['granite', 'granitemoehybrid']);
    expect(modelFamily('granite').architecture).toBe('GraniteForCausalLM');
    expect(() => modelFamily('llama', 'x/config.json')).toThrow(UnsupportedModelError);
    expect(() => modelFamily('llama', 'x/config.json')).toThrow(
      /^x\/config.json: model_type "llama" is not supported; graniteflow runs .*"granitemoehybrid" \(IBM Granite 4\.0: hybrid /,
    );
    expect(() => modelFamily('llama')).toThrow('"granite" (IBM Granite 3.x dense transformers)');
    expect(() => modelFamily('__proto__')).toThrow(UnsupportedModelError);
    expect(() => modelFamily('toString')).toThrow(UnsupportedModelError);
    expect(() => modelFamily(undefined)).toThrow('model_type undefined is not supported');
  });

  test.each([
    [{ rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling', /asks for "linear" RoPE scaling/],
    [{ hidden_act: 'tanh' }, 'hidden_act', /supported: silu, gelu/],
    [{ num_key_value_heads: 3 }, 'num_key_value_heads', /must divide num_attention_heads/],
    [{ model_type: 'granitemoehybrid' }, 'model_type', /handles "granite"/],
    [{ intermediate_size: -1 }, 'intermediate_size', /must be an integer from 1/],
    // Found by the config fuzzer: the derived head size passed unbounded, and config.json then held one the parser refuses.
    [
      { hidden_size: 65536, num_attention_heads: 1, num_key_value_heads: 1 },
      'head_dim',
      /is absent, giving hidden_size \/ num_attention_heads = 65536, more than 16384/,
    ],
  ])('a granite config with %j is refused naming %s', (patch, field, message) => {
    const raw = { model_type: 'granite', ...SIZES, intermediate_size: INTERMEDIATE, ...patch };
    let err: unknown;
    try {
      parseGraniteConfig(raw, 'x/config.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe(field);
    expect((err as Error).message).toMatch(message);
  });

  test('sizes by arithmetic equal the module tree, with and without biases and a tied head', () => {
    for (const patch of [{}, { attention_bias: true, mlp_bias: true, tie_word_embeddings: true, head_dim: 6 }]) {
      const cfg = parseGraniteConfig({ model_type: 'granite', ...SIZES, intermediate_size: INTERMEDIATE, ...patch });
      const model = new GraniteForCausalLM(cfg);
      const fromModules = [...model.namedParameters()].map(([n, p]) => [n, [...p.shape]]);
      // Linear weights are held [in, out]; the checkpoint (and the arithmetic) say [out, in].
      const checkpointShapes = new Map(parameterShapes(cfg));
      expect(fromModules.map(([n]) => n)).toEqual([...checkpointShapes.keys()]);
      const total = [...checkpointShapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
      expect(countParameters(cfg)).toEqual({ total, active: total });
      const e = estimateMemory(cfg, { contextLength: 100 });
      const headDim = cfg.head_dim;
      expect([e.stateBytesPerSequence, e.kvBytesPerToken]).toEqual([0, 4 * 3 * 2 * 2 * headDim]);
      expect(e.weightBytes).toBe(4 * total);
      model.dispose();
    }
  });
});

describeBackends('the granite family', (backend) => {
  for (const act of ['silu', 'gelu']) {
    test(`a granite checkpoint loads by model_type and computes what the all-attention hybrid does with the same weights (${act})`, async () => {
      const hybridCfg = hybridConfig(act);
      const weights = randomWeights(hybridCfg, 11);
      const hybridDir = writeFolder(path.join(tmp, `${backend}-${act}-hybrid`), hybridCfg, weights);
      const graniteDir = writeFolder(path.join(tmp, `${backend}-${act}-granite`), graniteConfig(act), toGraniteLayout(weights));
      const hybrid = await fromPretrained(hybridDir, { backend });
      const dense = await fromPretrained(graniteDir, { backend });
      try {
        expect(dense.model).toBeInstanceOf(GraniteForCausalLM);
        expect(dense.model.layerKinds).toEqual(['attention', 'attention', 'attention']);
        // Left padding in the second row: masks, positions (RoPE) and the cache all take part.
        const ids = tf.tensor2d(
          [
            [5, 17, 42, 8, 9, 3, 60],
            [0, 0, 7, 8, 90, 11, 2],
          ],
          [2, 7],
          'int32',
        );
        const mask = tf.tensor2d(
          [
            [1, 1, 1, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1, 1],
          ],
          [2, 7],
          'int32',
        );
        const want = hybrid.model.forward(ids, { attentionMask: mask }).logits!;
        const got = dense.model.forward(ids, { attentionMask: mask }).logits!;
        expect(Math.max(...(tf.max(tf.abs(got)).dataSync() as Float32Array))).toBeGreaterThan(0.1);
        expectClose(got, want, { atol: 2e-4, rtol: 2e-4 });
        tf.dispose([ids, mask, want, got]);

        // Greedy generation through the cache, with no tensor left behind.
        const prompt = [4, 20, 33, 7];
        const greedy = async (m: typeof dense) => {
          const out: number[] = [];
          for await (const id of m.generate(prompt, { maxNewTokens: 6, eosTokenIds: [] })) out.push(id);
          return out;
        };
        const expected = await greedy(hybrid);
        const before = tf.memory().numTensors;
        expect(await greedy(dense)).toEqual(expected);
        expect(tf.memory().numTensors).toBe(before);
      } finally {
        hybrid.dispose();
        dense.dispose();
      }
    });
  }

  test('saves as GraniteForCausalLM and reloads to the same logits; random checkpoints work for it too', async () => {
    const dir = path.join(tmp, `${backend}-random`);
    writeRandomCheckpoint(dir, graniteConfig('silu'), { seed: 3, std: 0.3, dtype: 'F32' });
    const loaded = await fromPretrained(dir, { backend });
    const saved = path.join(tmp, `${backend}-saved`);
    await saveCheckpoint(loaded.model, saved);
    const config = JSON.parse(fs.readFileSync(path.join(saved, 'config.json'), 'utf8'));
    expect([config.model_type, config.architectures]).toEqual(['granite', ['GraniteForCausalLM']]);
    const again = await fromPretrained(saved, { backend });
    await expectNoTensorLeak(() => {
      const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
      const a = loaded.model.forward(ids).logits!;
      const b = again.model.forward(ids).logits!;
      expectClose(b, a, { atol: 1e-6, rtol: 1e-6 });
      tf.dispose([ids, a, b]);
    });
    loaded.dispose();
    again.dispose();
  });
});
