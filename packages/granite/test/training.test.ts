import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@graniteflow/core/testing';
import { loadBalancingLoss } from '@graniteflow/ops-moe';
import { initBackend, SafetensorsFile } from '@graniteflow/core';
import {
  causalLmLoss,
  fromPretrained,
  GraniteMoeHybridForCausalLM,
  saveCheckpoint,
  IGNORE_INDEX,
  parseConfig,
  type GraniteMoeHybridConfig,
} from '../src';
import { GOLDEN } from './golden_fixtures';

/** tiny_moe: Mamba-2 and attention layers, 8 experts top-3 with a shared expert, tied head, initializer_range 0.1. */
const CONFIG: GraniteMoeHybridConfig = parseConfig(JSON.parse(fs.readFileSync(path.join(GOLDEN, 'tiny_moe', 'config.json'), 'utf8')));

function stdOf(t: tf.Tensor): number {
  const v = t.dataSync();
  let s = 0;
  let q = 0;
  for (const x of v) s += x;
  const mean = s / v.length;
  for (const x of v) q += (x - mean) ** 2;
  return Math.sqrt(q / v.length);
}

/** Next-token cross-entropy of one sequence. */
function lmLoss(model: GraniteMoeHybridForCausalLM, sequence: number[]): tf.Scalar {
  return tf.tidy(() => {
    const n = sequence.length - 1;
    const ids = tf.tensor2d(sequence.slice(0, n), [1, n], 'int32');
    const logits = tf.reshape(model.forward(ids).logits!, [n, CONFIG.vocab_size]);
    const labels = tf.oneHot(tf.tensor1d(sequence.slice(1), 'int32'), CONFIG.vocab_size);
    return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
  });
}

const SEQUENCE = Array.from({ length: 25 }, (_, i) => [17, 42, 99, 5, 230][i % 5]);

describe('a new GraniteMoeHybridForCausalLM', () => {
  beforeAll(() => initBackend('cpu'));

  it('initializes as transformers does, lazily, from initializer_range and a seed', () => {
    const live = tf.memory().numTensors;
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 5 });
    expect(tf.memory().numTensors).toBe(live); // nothing allocated before a weight is read
    const layer0 = model.model.layers[0];
    const mamba = layer0.mamba!;
    const std = CONFIG.initializer_range;
    expect(std).toBe(0.1);
    for (const w of [mamba.in_proj.weight, layer0.block_sparse_moe!.input_linear.weight, model.model.embed_tokens.weight]) {
      expect(Math.abs(stdOf(w.value) - std)).toBeLessThan(std * 0.08);
    }
    expectClose(
      mamba.A_log.value,
      Array.from({ length: 8 }, (_, h) => Math.log(h + 1)),
      { atol: 1e-6 },
    );
    expectClose(mamba.D.value, new Array(8).fill(1), { atol: 0 });
    expectClose(mamba.dt_bias.value, new Array(8).fill(1), { atol: 0 });
    expectClose(mamba.conv1d.bias!.value, new Array(mamba.conv1d.channels).fill(0), { atol: 0 });
    expectClose(mamba.norm.weight.value, new Array(mamba.norm.weight.size).fill(1), { atol: 0 });
    expectClose(layer0.input_layernorm.weight.value, new Array(64).fill(1), { atol: 0 });
    // pad_token_id 318: its row of the (tied, so transposed in memory) table is zeros.
    const padColumn = tf.slice(model.model.embed_tokens.weight.value, [0, 318], [64, 1]);
    expectClose(padColumn, new Array(64).fill(0), { atol: 0 });
    const again = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 5 });
    expect(again.model.layers[0].mamba!.in_proj.weight.value.dataSync()).toEqual(mamba.in_proj.weight.value.dataSync());
    const zeros = new GraniteMoeHybridForCausalLM(CONFIG, { init: 'zeros' });
    expect(tf.max(tf.abs(zeros.model.layers[0].mamba!.A_log.value)).dataSync()[0]).toBe(0);
    tf.dispose(padColumn);
    [model, again, zeros].forEach((m) => m.dispose());
  });
});

describeBackends('training a Granite hybrid', () => {
  it('variableGrads reaches every parameter: Mamba-2, attention, router, experts, shared MLP, norms, embeddings', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 6 });
    const names = new Map([...model.namedParameters()].map(([n, p]) => [p.value.name, n]));
    const { value, grads } = tf.variableGrads(() => lmLoss(model, SEQUENCE), model.trainableVariables());
    const missing = [...names.values()].filter((n) => !Object.keys(grads).some((v) => names.get(v) === n));
    expect(missing).toEqual([]);
    const zero = Object.entries(grads)
      .filter(([, g]) => tf.max(tf.abs(g)).dataSync()[0] === 0)
      .map(([v]) => names.get(v));
    expect(zero).toEqual([]);
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
  });

  it('gradients agree with central finite differences of the loss, one weight of each kind', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 8 });
    const layers = model.model.layers;
    const attention = layers.findIndex((l) => l.self_attn !== undefined);
    const probes: [string, number][] = [
      ['model.embed_tokens.weight', 17 * 64 + 3],
      [`model.layers.0.mamba.in_proj.weight`, 100],
      ['model.layers.0.mamba.A_log', 2],
      ['model.layers.0.mamba.dt_bias', 5],
      ['model.layers.1.mamba.conv1d.weight', 9],
      ['model.layers.1.mamba.out_proj.weight', 77],
      [`model.layers.${attention}.self_attn.q_proj.weight`, 40],
      [`model.layers.${attention}.self_attn.v_proj.weight`, 11],
      ['model.layers.0.block_sparse_moe.input_linear.weight', 500],
      ['model.layers.0.shared_mlp.output_linear.weight', 21],
      ['model.layers.3.post_attention_layernorm.weight', 7],
      ['model.norm.weight', 30],
    ];
    const params = new Map(model.namedParameters());
    const { value, grads } = tf.variableGrads(() => lmLoss(model, SEQUENCE), model.trainableVariables());
    const h = 1e-2;
    for (const [name, index] of probes) {
      const p = params.get(name)!;
      // The element in storage layout: a transposed weight holds [in, out].
      const storageIndex = p.layout === 'transposed' ? (index % p.shape[1]) * p.shape[0] + Math.floor(index / p.shape[1]) : index;
      const analytic = grads[p.value.name].dataSync()[storageIndex];
      const original = p.value.dataSync().slice() as Float32Array;
      const lossWith = (delta: number) => {
        const shifted = original.slice();
        shifted[storageIndex] += delta;
        p.writeValues((out) => out.set(shifted));
        const l = lmLoss(model, SEQUENCE);
        const v = l.dataSync()[0];
        l.dispose();
        return v;
      };
      const numeric = (lossWith(h) - lossWith(-h)) / (2 * h);
      p.writeValues((out) => out.set(original));
      expect([name, Math.abs(numeric - analytic) <= 0.05 * Math.abs(analytic) + 1e-4]).toEqual([name, true]);
    }
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
  });

  it('tf.train.adam lowers the loss, and a step leaves no tensor behind', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 7 });
    const optimizer = tf.train.adam(0.01);
    const losses: number[] = [];
    let live = -1;
    for (let step = 0; step < 6; step++) {
      const loss = optimizer.minimize(() => lmLoss(model, SEQUENCE), true, model.trainableVariables())!;
      losses.push(loss.dataSync()[0]);
      loss.dispose();
      if (step === 1) live = tf.memory().numTensors;
      if (step > 1) expect(tf.memory().numTensors).toBe(live);
    }
    expect(losses[5]).toBeLessThan(losses[0] * 0.3);
    optimizer.dispose();
    model.dispose();
  });
});

describeBackends('causalLmLoss', () => {
  const inputs = [SEQUENCE.slice(0, -1)];
  const labels = [SEQUENCE.slice(1)];

  it('is the mean cross-entropy over counted labels plus router_aux_loss_coef × the load-balancing loss of every MoE layer', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 9 });
    model.trainableVariables(); // the weights are made on first read
    const live = tf.memory().numTensors;
    const plain = causalLmLoss(model, { inputs, labels }, { auxLossCoef: 0 });
    const oracle = lmLoss(model, SEQUENCE);
    expectClose(plain, oracle.dataSync(), { atol: 1e-5 });
    // Half the labels ignored: the mean over the other half only.
    const half = labels.map((r) => r.map((id, t) => (t % 2 === 0 ? IGNORE_INDEX : id)));
    const masked = causalLmLoss(model, { inputs, labels: half }, { auxLossCoef: 0 });
    const perPosition = tf.tidy(() => {
      const logits = tf.reshape(model.forward(tf.tensor2d(inputs.flat(), [1, 24], 'int32')).logits!, [24, CONFIG.vocab_size]);
      return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(tf.tensor1d(labels[0], 'int32'), CONFIG.vocab_size)), 1));
    });
    const odd = Array.from(perPosition.dataSync()).filter((_, t) => t % 2 === 1);
    expect(masked.dataSync()[0]).toBeCloseTo(odd.reduce((a, b) => a + b, 0) / odd.length, 4);
    const ids = tf.tensor2d(inputs.flat(), [1, 24], 'int32');
    const out = model.forward(ids, { routerLogits: true, logits: 'none' });
    expect(out.routerLogits).toHaveLength(CONFIG.layer_types.length); // every layer of tiny_moe has experts
    const balance = loadBalancingLoss(out.routerLogits!, CONFIG.num_local_experts, CONFIG.num_experts_per_tok);
    const withAux = causalLmLoss(model, { inputs, labels }, { auxLossCoef: 0.5 });
    expect(withAux.dataSync()[0] - plain.dataSync()[0]).toBeCloseTo(0.5 * balance.dataSync()[0], 4);
    tf.dispose([ids, plain, oracle, masked, perPosition, balance, withAux, ...out.routerLogits!]);
    expect(tf.memory().numTensors).toBe(live);
    model.dispose();
  });

  it('the auxiliary loss sends gradient to the routers; bad labels are refused by value', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 10 });
    const router = model.model.layers[0].block_sparse_moe!.router.layer.weight.value;
    const routerGrad = (coef: number) => {
      const { value, grads } = tf.variableGrads(() => causalLmLoss(model, { inputs, labels }, { auxLossCoef: coef }), [router]);
      const g = grads[router.name].dataSync().slice();
      tf.dispose([value, grads[router.name]]);
      return g;
    };
    const without = routerGrad(0);
    const withAux = routerGrad(10);
    expect(Math.max(...without.map((g, i) => Math.abs(g - withAux[i])))).toBeGreaterThan(1e-4);
    expect(() => causalLmLoss(model, { inputs, labels: [labels[0].map(() => IGNORE_INDEX)] })).toThrow(/every label is -100/);
    expect(() => causalLmLoss(model, { inputs, labels: [labels[0].map(() => 320)] })).toThrow(
      /label 320 is outside the vocabulary \[0, 320\)/,
    );
    expect(() => causalLmLoss(model, { inputs, labels: [labels[0].slice(1)] })).toThrow(/must both be 1 rows of 24 tokens/);
    model.dispose();
  });
});

describe('saveCheckpoint', () => {
  it('writes a Hugging Face folder, BF16 on request, that fromPretrained loads back to the same weights', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-save-'));
    try {
      const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 12 });
      const out = path.join(dir, 'bf16');
      expect(await saveCheckpoint(model, out, { dtype: 'BF16' })).toEqual(['model.safetensors', 'config.json']);
      const file = SafetensorsFile.open(path.join(out, 'model.safetensors'));
      expect(file.info('model.layers.0.mamba.in_proj.weight').dtype).toBe('BF16');
      expect(file.names().sort()).toEqual([...model.namedParameters()].map(([n]) => n).sort());
      file.close();
      expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
      const loaded = await fromPretrained(out, { backend: 'cpu' });
      const back = new Map(loaded.model.namedParameters());
      for (const [name, p] of model.namedParameters()) {
        // In checkpoint layout both ways (a Linear's transposed storage is undone on save and redone on load).
        const a = p.checkpointValue();
        const b = back.get(name)!.checkpointValue();
        expectClose(b, a.dataSync(), { atol: 1e-6, rtol: 1 / 128 });
        tf.dispose([a, b]);
      }
      loaded.model.dispose();
      model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
