import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { LoraAdapters, Module, SafetensorsFile } from '@graniteflow/core';
import { describeBackends, expectClose, maxAbsDiff } from '@graniteflow/core/testing';
import { SparseMoE, type SparseMoEConfig } from '../src';
import { makeMoe, randn } from './helpers';

// H and I multiples of 32: the packed base's rows are whole q8_0 blocks.
const CONFIG: SparseMoEConfig = { hiddenSize: 32, intermediateSize: 32, numExperts: 4, topK: 2 };

/** A model whose experts sit where Granite's do, so the adapter keys read like a real one's. */
class Block extends Module {
  constructor(readonly block_sparse_moe: SparseMoE) {
    super();
  }
}

/**
 * PEFT's ParamWrapper delta, written out as loops in float64: A [r·E, d1], B [d2, r·E],
 * ΔW[e][i][o] = scale · Σ_j A[e·r + j][i] · B[o][j·E + e].
 */
function peftDelta(a: Float32Array, b: Float32Array, e: number, r: number, d1: number, d2: number, scale: number): Float32Array {
  const out = new Float32Array(e * d1 * d2);
  for (let ex = 0; ex < e; ex++)
    for (let i = 0; i < d1; i++)
      for (let o = 0; o < d2; o++) {
        let s = 0;
        for (let j = 0; j < r; j++) s += a[(ex * r + j) * d1 + i] * b[o * (r * e) + j * e + ex];
        out[(ex * d1 + i) * d2 + o] = scale * s;
      }
  return out;
}

function randomizeAdapters(lora: LoraAdapters, seed: number): void {
  let s = seed;
  for (const [, p] of lora.namedParameters()) p.assign(tf.randomNormal([...p.shape], 0, 0.2, 'float32', s++));
}

describeBackends('LoRA on the routed experts', () => {
  const x = () => randn([6, 32], 11);

  it('runs each routed expert with W[e] + ΔW[e] in PEFT layout: equals the dense reference on merged weights (float and packed base)', () => {
    for (const dtype of ['f32', 'q8_0'] as const) {
      const block = new Block(makeMoe(CONFIG, 3));
      const moe = block.block_sparse_moe;
      if (dtype === 'q8_0') [moe.input_linear, moe.output_linear].forEach((l) => l.weight.pack('q8_0'));
      const lora = LoraAdapters.attach(block, { rank: 2, alpha: 6, targets: [] });
      expect(lora.paths).toEqual(['block_sparse_moe.input_linear', 'block_sparse_moe.output_linear']);
      const shapes = Object.fromEntries([...lora.namedParameters()].map(([n, p]) => [n, p.shape]));
      expect(shapes).toEqual({
        'block_sparse_moe.input_linear.lora_A.weight': [8, 64],
        'block_sparse_moe.input_linear.lora_B.weight': [32, 8],
        'block_sparse_moe.output_linear.lora_A.weight': [8, 32],
        'block_sparse_moe.output_linear.lora_B.weight': [32, 8],
      });
      // A new adapter changes nothing (B starts at zero).
      const xs = x();
      const base = tf.tidy(() => moe.forwardDense(xs));
      const fresh = tf.tidy(() => moe.forward(xs));
      expectClose(fresh, base.dataSync(), { atol: 1e-5 });
      randomizeAdapters(lora, 21);
      const adapted = tf.tidy(() => moe.forward(xs));
      // The oracle: a plain SparseMoE holding W + the loop-computed delta, run densely.
      const values = new Map([...lora.namedParameters()].map(([n, p]) => [n, p.value.dataSync() as Float32Array]));
      const merged = (name: 'input_linear' | 'output_linear') => {
        const [e, d1, d2] = moe[name].weight.shape;
        const w = moe[name].weight.checkpointValue();
        const d = peftDelta(
          values.get(`block_sparse_moe.${name}.lora_A.weight`)!,
          values.get(`block_sparse_moe.${name}.lora_B.weight`)!,
          e,
          2,
          d1,
          d2,
          3,
        );
        const sum = tf.tidy(() => tf.add(w, tf.tensor(d, [e, d1, d2])));
        w.dispose();
        return sum;
      };
      const oracle = new SparseMoE(CONFIG);
      oracle.loadStateDict({
        'router.layer.weight': moe.router.layer.weight.checkpointValue(),
        'input_linear.weight': merged('input_linear'),
        'output_linear.weight': merged('output_linear'),
      });
      const expected = tf.tidy(() => oracle.forwardDense(xs));
      expectClose(adapted, expected.dataSync(), { atol: 2e-5, rtol: 1e-4 });
      expect(maxAbsDiff(adapted.dataSync(), base.dataSync())).toBeGreaterThan(1e-2);
      lora.detach();
      expect(moe.input_linear.adapter).toBeNull();
      tf.dispose([xs, base, fresh, adapted, expected]);
      [block, oracle].forEach((m) => m.dispose());
    }
  });

  it('gradients reach both factors (finite differences) and training moves only them; merge keeps the outputs', () => {
    const block = new Block(makeMoe(CONFIG, 5));
    const moe = block.block_sparse_moe;
    const lora = LoraAdapters.attach(block, { rank: 2, targets: [], seed: 1 });
    randomizeAdapters(lora, 31);
    const xs = x();
    const ys = randn([6, 32], 12, 0.5);
    const loss = () => tf.tidy(() => tf.mean(tf.square(tf.sub(moe.forward(xs), ys))) as tf.Scalar);
    const { grads } = tf.variableGrads(loss, lora.trainableVariables());
    expect(Object.keys(grads)).toHaveLength(4);
    // Finite differences on one element of each factor (the routing does not change under ±1e-2).
    for (const [name, p] of lora.namedParameters()) {
      const v = p.value;
      const g = grads[v.name].dataSync()[3];
      const orig = v.dataSync().slice() as Float32Array;
      const at = (d: number) => {
        const t = orig.slice();
        t[3] += d;
        v.assign(tf.tensor(t, v.shape));
        return loss().dataSync()[0];
      };
      const fd = (at(1e-2) - at(-1e-2)) / 2e-2;
      v.assign(tf.tensor(orig, v.shape));
      expect([name, Math.abs(g - fd) < 2e-3 + 2e-2 * Math.abs(fd)]).toEqual([name, true]);
    }
    tf.dispose(Object.values(grads));
    const baseValues = [moe.input_linear.weight, moe.output_linear.weight, moe.router.layer.weight].map((w) =>
      Array.from(w.value.dataSync()),
    );
    const opt = tf.train.adam(0.02);
    const first = loss().dataSync()[0];
    for (let s = 0; s < 30; s++) opt.minimize(loss, false, lora.trainableVariables());
    expect(loss().dataSync()[0]).toBeLessThan(first * 0.8);
    [moe.input_linear.weight, moe.output_linear.weight, moe.router.layer.weight].forEach((w, i) =>
      expect(Array.from(w.value.dataSync())).toEqual(baseValues[i]),
    );
    const adapted = tf.tidy(() => moe.forward(xs));
    lora.merge();
    expect(moe.input_linear.adapter).toBeNull();
    const merged = tf.tidy(() => moe.forward(xs));
    expectClose(merged, adapted.dataSync(), { atol: 2e-5, rtol: 1e-4 });
    tf.dispose([xs, ys, adapted, merged]);
    opt.dispose();
    block.dispose();
  });

  it('saves PEFT target_parameters adapters and loads them back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-expert-lora-'));
    try {
      const block = new Block(makeMoe(CONFIG, 7));
      const lora = LoraAdapters.attach(block, { rank: 2, targets: [], expertTargets: ['input_linear'] });
      randomizeAdapters(lora, 41);
      const xs = x();
      const adapted = tf.tidy(() => block.block_sparse_moe.forward(xs));
      lora.save(dir);
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      expect(config).toMatchObject({ peft_type: 'LORA', r: 2, target_modules: [], target_parameters: ['input_linear.weight'] });
      const file = SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors'));
      expect(file.names().sort()).toEqual(['lora_A', 'lora_B'].map((f) => `base_model.model.block_sparse_moe.input_linear.${f}.weight`));
      file.close();
      const fresh = new Block(makeMoe(CONFIG, 7));
      const loaded = LoraAdapters.load(fresh, dir);
      expect(loaded.paths).toEqual(['block_sparse_moe.input_linear']);
      const again = tf.tidy(() => fresh.block_sparse_moe.forward(xs));
      expectClose(again, adapted.dataSync(), { atol: 1e-6 });
      [lora, loaded].forEach((l) => l.detach());
      tf.dispose([xs, adapted, again]);
      [block, fresh].forEach((m) => m.dispose());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
