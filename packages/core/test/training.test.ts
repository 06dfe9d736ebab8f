import * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, Parameter, RMSNorm, normalInit, parameterSeed } from '../src';
import { describeBackends, expectClose, randomFloats } from '../src/testing';
import { SEGMENT_SUM_COUNTER } from '../src/kernels/unsorted_segment_sum';
import { simdCounters } from '../src/kernels/simd_module';

/** A little language model using every core layer: every parameter is on the path to the loss. */
class TinyLm extends Module {
  readonly embed_tokens: Embedding;
  readonly proj = new Linear(8, 8, { bias: true });
  readonly norm = new RMSNorm(8, 1e-5);
  readonly lm_head = new Linear(8, 12);

  constructor(tied = false) {
    super();
    this.embed_tokens = new Embedding(12, 8, { tiedHead: tied });
  }

  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.lm_head.forward(this.norm.forward(tf.tanh(this.proj.forward(this.embed_tokens.forward(ids))))));
  }

  /** Next-token cross-entropy over a sequence. */
  loss(sequence: number[]): tf.Scalar {
    return tf.tidy(() => {
      const ids = tf.tensor2d(sequence.slice(0, -1), [1, sequence.length - 1], 'int32');
      const logits = tf.reshape(this.forward(ids), [sequence.length - 1, 12]);
      const labels = tf.oneHot(tf.tensor1d(sequence.slice(1), 'int32'), 12);
      return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
    });
  }
}

const SEQUENCE = [1, 5, 2, 7, 1, 5, 2, 7, 1, 5, 2, 7, 3];

function valuesOf(m: Module): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, p] of m.namedParameters()) out.set(name, p.value.dataSync() as Float32Array);
  return out;
}

describeBackends('training', () => {
  it('parameters are tf.Variables: variableGrads reaches every one, the transposed Linear weights included', () => {
    const m = new TinyLm().initialize('hf', { seed: 1 });
    for (const [, p] of m.namedParameters()) expect(p.value).toBeInstanceOf(tf.Variable);
    const { value, grads } = tf.variableGrads(() => m.loss(SEQUENCE), m.trainableVariables());
    const names = [...m.namedParameters()].map(([n]) => n);
    const byVariable = new Map([...m.namedParameters()].map(([n, p]) => [p.value.name, n]));
    const reached = Object.keys(grads).map((v) => byVariable.get(v));
    expect(reached.sort()).toEqual([...names].sort());
    for (const g of Object.values(grads)) expect(tf.max(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    m.dispose();
  });

  it.each([false, true])('tf.train.adam().minimize trains every parameter and the loss falls (tied head %s)', (tied) => {
    const m = new TinyLm(tied).initialize('hf', { seed: 2 });
    const before = valuesOf(m);
    const optimizer = tf.train.adam(0.05);
    const first = m.loss(SEQUENCE);
    const initial = first.dataSync()[0];
    first.dispose();
    let live = -1;
    for (let step = 0; step < 60; step++) {
      // No varList: what a user writing plain tfjs does; the module's variables are registered ones.
      optimizer.minimize(() => m.loss(SEQUENCE))?.dispose();
      // The optimizer makes its slots on the first step; after that a step leaves nothing behind.
      if (step === 1) live = tf.memory().numTensors;
      if (step > 1) expect(tf.memory().numTensors).toBe(live);
    }
    const last = m.loss(SEQUENCE);
    expect(last.dataSync()[0]).toBeLessThan(initial * 0.25);
    last.dispose();
    const after = valuesOf(m);
    for (const [name, v] of before) {
      const changed = after.get(name)!.some((x, i) => x !== v[i]);
      expect([name, changed]).toEqual([name, true]);
    }
    optimizer.dispose();
    m.dispose();
  });

  it('the embedding gradient sums the rows of repeated ids, in both table layouts', () => {
    const ids = tf.tensor1d([3, 0, 3, 5], 'int32');
    const dy = tf.tensor2d(randomFloats(4 * 8, 3), [4, 8]);
    // Expected by hand: dTable[r] = Σ over positions i with ids[i] = r of dy[i].
    const dyv = dy.dataSync();
    const expected = new Float32Array(12 * 8);
    [3, 0, 3, 5].forEach((row, i) => {
      for (let j = 0; j < 8; j++) expected[row * 8 + j] += dyv[i * 8 + j];
    });
    for (const tiedHead of [false, true]) {
      const e = new Embedding(12, 8, { tiedHead }).initialize('hf', { seed: 3 });
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(e.forward(ids), dy)), [e.weight.value]);
      const g = grads[e.weight.value.name];
      const checkpointLayout = tiedHead ? tf.transpose(g) : g;
      expectClose(checkpointLayout, expected, { atol: 1e-6 });
      tf.dispose([g, checkpointLayout]);
      e.dispose();
    }
    tf.dispose([ids, dy]);
  });

  it('UnsortedSegmentSum drops ids outside [0, numSegments) and keeps trailing axes', () => {
    const x = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [3, 2, 2]);
    const out = tf.unsortedSegmentSum(x, tf.tensor1d([1, 1, 9], 'int32'), 3);
    expect(out.shape).toEqual([3, 2, 2]);
    expectClose(out, [0, 0, 0, 0, 6, 8, 10, 12, 0, 0, 0, 0], { atol: 0 });
    tf.dispose([x, out]);
  });

  it('UnsortedSegmentSum of an embedding gradient (128 rows into 2,048 segments) is one pass, on every backend', () => {
    const [rows, width, segments] = [128, 256, 2048];
    const xs = randomFloats(rows * width, 7);
    const ids = Int32Array.from({ length: rows }, (_, r) => (r * 977) % segments);
    ids[5] = ids[9]; // a repeated id adds up
    const expected = new Float32Array(segments * width);
    for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) expected[ids[r] * width + j] += xs[r * width + j];
    const before = simdCounters()[SEGMENT_SUM_COUNTER] ?? 0;
    const x = tf.tensor2d(xs, [rows, width]);
    const out = tf.unsortedSegmentSum(x, tf.tensor1d(ids, 'int32'), segments);
    expectClose(out, expected, { atol: 1e-6 });
    // tfjs-backend-cpu's own masks every segment against all of x (seconds here); ours ran instead.
    expect((simdCounters()[SEGMENT_SUM_COUNTER] ?? 0) - before).toBe(1);
    tf.dispose([x, out]);
  });

  it('freeze by pattern: frozen weights stay put, the rest train; no match is an error naming the parameters', () => {
    const m = new TinyLm().initialize('hf', { seed: 4 });
    expect(m.freeze('embed_tokens.*')).toBe(1);
    expect(m.freeze(/^lm_head\./)).toBe(1);
    expect([...m.trainableParameters()].map(([n]) => n)).toEqual(['proj.weight', 'proj.bias', 'norm.weight']);
    const before = valuesOf(m);
    const optimizer = tf.train.sgd(0.1);
    optimizer.minimize(() => m.loss(SEQUENCE))?.dispose();
    const after = valuesOf(m);
    expect(after.get('embed_tokens.weight')).toEqual(before.get('embed_tokens.weight'));
    expect(after.get('lm_head.weight')).toEqual(before.get('lm_head.weight'));
    expect(after.get('proj.weight')).not.toEqual(before.get('proj.weight'));
    expect(() => m.freeze('layers.*.mamba')).toThrow(
      /freeze\(layers\.\*\.mamba\): no parameter matches; names look like embed_tokens\.weight, proj\.weight, proj\.bias/,
    );
    expect(m.unfreeze('**')).toBe(5);
    expect([...m.trainableParameters()]).toHaveLength(5);
    optimizer.dispose();
    m.dispose();
  });

  it('a parameter keeps its variable when assigned (an optimizer holding it trains the new value)', () => {
    const lin = new Linear(3, 2);
    const v = lin.weight.value;
    lin.weight.assign(tf.ones([2, 3]));
    expect(lin.weight.value).toBe(v);
    expectClose(lin.weight.value, [1, 1, 1, 1, 1, 1], { atol: 0 });
    lin.dispose();
    // Assigning another parameter's variable copies the handle, leaving the other intact.
    const a = new Parameter([2, 3], 2);
    const b = new Parameter([2, 3]);
    b.assign(a.value);
    expect(b.value).not.toBe(a.value);
    a.dispose();
    expectClose(b.value, [2, 2, 2, 2, 2, 2], { atol: 0 });
    b.dispose();
  });
});

describe('initialize', () => {
  class Big extends Module {
    readonly embed_tokens = new Embedding(300, 64, { paddingIdx: 7 });
    readonly proj = new Linear(256, 256, { bias: true });
    readonly norm = new RMSNorm(64, 1e-5);
    readonly A_log = new Parameter([4], () => tf.log(tf.range(1, 5)));
  }

  function stats(t: tf.Tensor): { mean: number; std: number } {
    const v = t.dataSync();
    let s = 0;
    for (const x of v) s += x;
    const mean = s / v.length;
    let q = 0;
    for (const x of v) q += (x - mean) ** 2;
    return { mean, std: Math.sqrt(q / v.length) };
  }

  it("'hf' follows each module's Hugging Face initialization, with std and a reproducible seed", () => {
    const m = new Big().initialize('hf', { std: 0.05, seed: 11 });
    const w = stats(m.proj.weight.value);
    expect(Math.abs(w.mean)).toBeLessThan(0.002);
    expect(w.std).toBeGreaterThan(0.05 * 0.97);
    expect(w.std).toBeLessThan(0.05 * 1.03);
    expectClose(m.proj.bias!.value, new Array(256).fill(0), { atol: 0 });
    expectClose(m.norm.weight.value, new Array(64).fill(1), { atol: 0 });
    expectClose(m.A_log.value, [0, Math.log(2), Math.log(3), Math.log(4)], { atol: 1e-6 });
    const table = m.embed_tokens.weight.value;
    const padRow = tf.slice(table, [7, 0], [1, 64]);
    expectClose(padRow, new Array(64).fill(0), { atol: 0 });
    expect(stats(tf.slice(table, [8, 0], [100, 64])).std).toBeGreaterThan(0.04);
    const again = new Big().initialize('hf', { std: 0.05, seed: 11 });
    expect(again.proj.weight.value.dataSync()).toEqual(m.proj.weight.value.dataSync());
    const other = new Big().initialize('hf', { std: 0.05, seed: 12 });
    expect(other.proj.weight.value.dataSync()).not.toEqual(m.proj.weight.value.dataSync());
    expect(parameterSeed(11, 'proj.weight')).not.toBe(parameterSeed(11, 'proj.bias'));
    tf.dispose(padRow);
    [m, again, other].forEach((x) => x.dispose());
  });

  it("'zeros', a function, and lazy initialization that allocates nothing and keeps set values", () => {
    const z = new Big().initialize('zeros');
    expect(tf.max(tf.abs(z.norm.weight.value)).dataSync()[0]).toBe(0);
    z.dispose();
    const f = new Big().initialize((name, p) => (name === 'A_log' ? tf.fill(p.shape as number[], 3) : tf.zeros(p.shape as number[])));
    expectClose(f.A_log.value, [3, 3, 3, 3], { atol: 0 });
    f.dispose();

    const lazy = new Big();
    lazy.norm.weight.assign(tf.fill([64], 5));
    const live = tf.memory().numTensors;
    lazy.initialize('hf', { lazy: true, seed: 1, std: 0.1 });
    expect(tf.memory().numTensors).toBe(live);
    expectClose(lazy.norm.weight.value, new Array(64).fill(5), { atol: 0 }); // already set: kept
    expect(stats(lazy.proj.weight.value).std).toBeGreaterThan(0.09); // first read: the lazy initializer
    lazy.dispose();
  });

  it('rejects a bad std and a padding row outside the table, and the wrong shape from a function', () => {
    expect(() => new Big().initialize('hf', { std: -1 })).toThrow(/std must be a finite number ≥ 0, got -1/);
    expect(() => new Embedding(4, 2, { paddingIdx: 4 })).toThrow(/paddingIdx must be a row of the table \[0, 4\), got 4/);
    expect(() => new Linear(2, 2).initialize(() => tf.zeros([3]))).toThrow(/expects shape \[2,2\], got \[3\]/);
    expect(normalInit([2], { std: 0 }).dataSync()).toEqual(new Float32Array([0, 0]));
  });
});
