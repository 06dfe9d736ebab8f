import { setKernelMode } from '@graniteflow/core';
import { describeBackends, expectClose, expectNoTensorLeak } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { Mamba2Mixer, MambaCache, type Mamba2Config } from '../src';
import { naiveGatedNorm } from './naive';
import { randn } from './random';

const CONFIG: Mamba2Config = {
  hiddenSize: 8,
  numHeads: 4,
  headDim: 3,
  stateSize: 5,
  nGroups: 2,
  convKernel: 4,
  chunkSize: 4,
  eps: 1e-5,
  convBias: true,
  projBias: false,
  timeStepLimit: [0, Infinity],
};

/** A mixer with random weights (every parameter replaced, scaled to keep activations O(1)), or those of `dict`. */
function randomMixer(config: Mamba2Config, dict = new Map<string, tf.Tensor>()): Mamba2Mixer {
  const m = new Mamba2Mixer(config);
  for (const [name, p] of m.namedParameters()) {
    const fanIn = p.shape.length === 2 ? p.shape[1] : p.shape.length === 3 ? p.shape[2] : 1;
    if (!dict.has(name)) dict.set(name, randn(p.shape as number[], 1 / Math.sqrt(fanIn)));
  }
  m.loadStateDict(dict);
  return m;
}

const TOL = { atol: 2e-4, rtol: 2e-4 };

describeBackends('Mamba2Mixer', () => {
  it('names its parameters exactly as the checkpoint (model guide: Checkpoint format)', () => {
    const m = new Mamba2Mixer(CONFIG);
    const dIn = 12;
    const convDim = dIn + 2 * 2 * 5;
    expect([...m.namedParameters('model.layers.0.mamba')].map(([n, p]) => [n, p.shape])).toEqual([
      ['model.layers.0.mamba.in_proj.weight', [2 * dIn + 2 * 2 * 5 + 4, 8]],
      ['model.layers.0.mamba.conv1d.weight', [convDim, 1, 4]],
      ['model.layers.0.mamba.conv1d.bias', [convDim]],
      ['model.layers.0.mamba.dt_bias', [4]],
      ['model.layers.0.mamba.A_log', [4]],
      ['model.layers.0.mamba.D', [4]],
      ['model.layers.0.mamba.norm.weight', [dIn]],
      ['model.layers.0.mamba.out_proj.weight', [8, dIn]],
    ]);
    const withBias = new Mamba2Mixer({ ...CONFIG, projBias: true, convBias: false });
    const names = [...withBias.namedParameters()].map(([n]) => n);
    expect(names).toContain('in_proj.bias');
    expect(names).toContain('out_proj.bias');
    expect(names).not.toContain('conv1d.bias');
    m.dispose();
    withBias.dispose();
  });

  it('forward gives [B, T, H]; fused kernels and the composed references agree', () => {
    const m = randomMixer(CONFIG);
    const u = randn([2, 7, 8]);
    const y = m.forward(u);
    expect(y.shape).toEqual([2, 7, 8]);
    const previous = setKernelMode('reference');
    try {
      expectClose(m.forward(u), y, TOL);
    } finally {
      setKernelMode(previous);
    }
    m.dispose();
  });

  it('normGroups: the gated norm normalises D/normGroups channels at a time (Nemotron-H), checked against a float64 norm', () => {
    // loadStateDict takes the tensors it is given: each mixer gets its own copy of the same weights.
    const weights = new Map([...new Mamba2Mixer(CONFIG).namedParameters()].map(([n, p]) => [n, randn(p.shape as number[], 0.3)]));
    const copy = () => new Map([...weights].map(([n, t]) => [n, t.clone()]));
    const grouped = randomMixer({ ...CONFIG, normGroups: 2 }, copy());
    const full = randomMixer(CONFIG, copy());
    // The norm's inputs are the same in both mixers: capture them from the full-width one.
    let seen: [Float32Array, Float32Array] | null = null;
    const normForward = full.norm.forward.bind(full.norm);
    full.norm.forward = (y, z) => {
      seen = [y.dataSync() as Float32Array, z.dataSync() as Float32Array];
      return normForward(y, z);
    };
    const u = randn([2, 5, 8]);
    const fullOut = full.forward(u);
    const groupedOut = grouped.forward(u);
    const [y, z] = seen!;
    const normed = naiveGatedNorm(y, z, grouped.norm.weight.value.dataSync(), 12, 6, CONFIG.eps);
    const expected = grouped.out_proj.forward(tf.tensor3d(Float32Array.from(normed), [2, 5, 12]));
    expectClose(groupedOut, expected, TOL);
    expect(tf.max(tf.abs(tf.sub(groupedOut, fullOut))).dataSync()[0]).toBeGreaterThan(1e-3);
    expect(() => new Mamba2Mixer({ ...CONFIG, normGroups: 5 })).toThrow(
      'normGroups must be a positive integer dividing numHeads·headDim = 12, got 5',
    );
    grouped.dispose();
    full.dispose();
    tf.dispose([...weights.values()]);
  });

  it('prefill(T) = prefill(T − n) then n one-token steps, and equals no cache', () => {
    const m = randomMixer(CONFIG);
    const [B, T, n] = [2, 9, 3];
    const u = randn([B, T, 8]);
    const plain = m.forward(u);
    const fullCache = m.makeCache(B);
    const full = m.forward(u, { cache: fullCache });
    expectClose(full, plain, TOL, 'with vs without cache');

    const cache = m.makeCache(B);
    const outs = [m.forward(tf.slice(u, [0, 0, 0], [-1, T - n, -1]), { cache })];
    for (let t = T - n; t < T; t++) outs.push(m.forward(tf.slice(u, [0, t, 0], [-1, 1, -1]), { cache }));
    expectClose(tf.concat(outs, 1), full, TOL, 'prefill + steps');
    expectClose(cache.convState, fullCache.convState, TOL, 'conv state');
    expectClose(cache.ssmState, fullCache.ssmState, TOL, 'ssm state');
    expect(cache.offset).toBe(T);
    cache.dispose();
    fullCache.dispose();
    m.dispose();
  });

  it('continues exactly from a cache with T > 1 (chunks of 2, 3 and 4 tokens, P15)', () => {
    const m = randomMixer({ ...CONFIG, nGroups: 1, chunkSize: 2 });
    const u = randn([1, 9, 8]);
    const full = m.forward(u);
    const cache = m.makeCache(1);
    const outs: tf.Tensor[] = [];
    let t = 0;
    for (const len of [2, 3, 4]) {
      outs.push(m.forward(tf.slice(u, [0, t, 0], [-1, len, -1]), { cache }));
      t += len;
    }
    expectClose(tf.concat(outs, 1), full, TOL);
    cache.dispose();
    m.dispose();
  });

  it('left padding with a mask leaves the real tokens as if unpadded (HF padded batches)', () => {
    const m = randomMixer(CONFIG);
    const [T, pad] = [6, 2];
    const a = randn([1, T - pad, 8]);
    const b = randn([1, T, 8]);
    const padded = tf.concat([tf.concat([randn([1, pad, 8], 3), a], 1), b], 0); // [2, T, 8], row 0 left-padded
    const mask = tf.tensor2d([
      [0, 0, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1],
    ]);
    const cache = m.makeCache(2);
    const y = m.forward(padded, { mask, cache });
    expectClose(tf.slice(y, [0, pad, 0], [1, -1, -1]), m.forward(a), TOL, 'padded row');
    expectClose(tf.slice(y, [1, 0, 0], [1, -1, -1]), m.forward(b), TOL, 'full row');
    // The cached state of the padded row equals that of the unpadded sequence: decoding continues alike.
    const alone = m.makeCache(1);
    m.forward(a, { cache: alone }).dispose();
    expectClose(tf.slice(cache.ssmState, [0], [1]), alone.ssmState, TOL, 'ssm state of the padded row');
    const next = randn([2, 1, 8]);
    const stepBoth = m.forward(next, { cache });
    expectClose(tf.slice(stepBoth, [0], [1]), m.forward(tf.slice(next, [0], [1]), { cache: alone }), TOL, 'next step');
    cache.dispose();
    alone.dispose();
    m.dispose();
  });

  it('the cache is updated in place without leaks; clone() is independent', async () => {
    const m = randomMixer(CONFIG);
    const u = randn([1, 5, 8]);
    const step = randn([1, 1, 8]);
    const cache = m.makeCache(1);
    m.forward(u, { cache }).dispose();
    const snapshot = cache.clone();
    await expectNoTensorLeak(() => {
      m.forward(step, { cache }).dispose();
      m.forward(u, { cache }).dispose();
    }, 'mixer forward with cache');
    expect(cache.offset).toBe(5 + 1 + 5);
    expect(snapshot.offset).toBe(5);
    const a = m.forward(step, { cache: snapshot });
    const fresh = m.makeCache(1);
    m.forward(u, { cache: fresh }).dispose();
    expectClose(a, m.forward(step, { cache: fresh }), TOL, 'snapshot resumes like the original');
    await expectNoTensorLeak(() => m.forward(u).dispose(), 'mixer forward without cache');
    tf.dispose([a]);
    for (const c of [cache, snapshot, fresh]) c.dispose();
    m.dispose();
  });

  it('MambaCache.zeros has the configured shapes; bad inputs are rejected by name', () => {
    const c = MambaCache.zeros(CONFIG, 3);
    expect(c.convState.shape).toEqual([3, 3, 12 + 20]);
    expect(c.ssmState.shape).toEqual([3, 4, 3, 5]);
    const m = new Mamba2Mixer(CONFIG);
    expect(() => m.forward(tf.zeros([1, 2, 7]))).toThrow('Mamba2Mixer: u must be [B, T, H] = [B, T, 8], got [1, 2, 7]');
    expect(() => m.forward(tf.zeros([2, 2, 8]), { cache: MambaCache.zeros(CONFIG, 1) })).toThrow(/cache holds 1 sequences/);
    expect(() => m.forward(tf.zeros([2, 2, 8]), { mask: tf.ones([2, 3]) })).toThrow(
      'Mamba2Mixer: mask must be [B, T] = [2, 2], got [2, 3]',
    );
    expect(() => new Mamba2Mixer({ ...CONFIG, nGroups: 3 })).toThrow(/numHeads = 4 must be a multiple of nGroups = 3/);
    c.dispose();
    m.dispose();
  });
});
