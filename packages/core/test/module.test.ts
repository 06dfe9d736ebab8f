import * as tf from '@tensorflow/tfjs-core';
import { Embedding, Linear, Module, Parameter, RMSNorm, StateDictError, initBackend } from '../src';
import { describeBackends, expectClose, expectNoTensorLeak } from '../src/testing';

class Block extends Module {
  readonly in_proj = new Linear(4, 6);
  readonly A_log = new Parameter([3]);
  readonly norm = new RMSNorm(6, 1e-5);
}

class Model extends Module {
  readonly embed_tokens = new Embedding(10, 4);
  readonly layers = [new Block(), new Block()];
  readonly lm_head = new Linear(4, 10, { bias: true });
  readonly notAParameter = 3;
}

beforeAll(() => initBackend('cpu'));

describe('Module', () => {
  it('names parameters after attribute paths, arrays as indices', () => {
    const m = new Model();
    expect([...m.namedParameters()].map(([n, p]) => [n, p.shape])).toEqual([
      ['embed_tokens.weight', [10, 4]],
      ['layers.0.in_proj.weight', [6, 4]],
      ['layers.0.A_log', [3]],
      ['layers.0.norm.weight', [6]],
      ['layers.1.in_proj.weight', [6, 4]],
      ['layers.1.A_log', [3]],
      ['layers.1.norm.weight', [6]],
      ['lm_head.weight', [10, 4]],
      ['lm_head.bias', [10]],
    ]);
    expect(m.parameterCount()).toBe(40 + 2 * (24 + 3 + 6) + 40 + 10);
    expect([...m.namedModules()].map(([n]) => n)).toContain('layers.1.norm');
    m.dispose();
  });

  it('reports missing, unexpected and mis-shaped tensors together, assigning nothing', () => {
    const m = new Model();
    const dict = new Map<string, tf.Tensor>();
    for (const [name, p] of m.namedParameters()) dict.set(name, tf.ones(p.shape as number[]));
    dict.delete('layers.1.A_log');
    dict.set('layers.0.in_proj.weight', tf.ones([4, 6]));
    dict.set('layers.0.mamba.D', tf.ones([3]));
    let err: StateDictError | undefined;
    try {
      m.loadStateDict(dict, { source: 'ckpt/' });
    } catch (e) {
      err = e as StateDictError;
    }
    expect(err).toBeInstanceOf(StateDictError);
    expect(err!.missing).toEqual(['layers.1.A_log']);
    expect(err!.unexpected).toEqual(['layers.0.mamba.D']);
    expect(err!.mismatched).toEqual([{ name: 'layers.0.in_proj.weight', expected: [6, 4], actual: [4, 6] }]);
    expect(err!.message).toMatch(
      /from ckpt\/.*missing 1: layers.1.A_log; unexpected 1: layers.0.mamba.D; wrong shape 1: layers.0.in_proj.weight expected \[6,4\] got \[4,6\]/,
    );
    expect(m.layers[0].A_log.isSet).toBe(false);
    // Non-strict loading tolerates missing and unexpected names but never wrong shapes.
    dict.set('layers.0.in_proj.weight', tf.ones([6, 4]));
    m.loadStateDict(dict, { strict: false });
    expect(m.layers[0].A_log.value.dataSync()).toEqual(new Float32Array([1, 1, 1]));
    m.dispose();
  });

  it('dispose frees every parameter tensor', async () => {
    await expectNoTensorLeak(() => {
      const m = new Model();
      const dict: Record<string, tf.Tensor> = {};
      for (const [name, p] of m.namedParameters()) dict[name] = tf.zeros(p.shape as number[]);
      m.loadStateDict(dict);
      m.dispose();
    });
  });
});

describeBackends('layers', () => {
  it('Linear computes x·Wᵀ + b over leading axes', () => {
    const l = new Linear(2, 3, { bias: true });
    l.loadStateDict({
      weight: tf.tensor2d([
        [1, 0],
        [0, 1],
        [1, 1],
      ]),
      bias: tf.tensor1d([0.5, 0, -1]),
    });
    const y = l.forward(tf.tensor3d([[[1, 2]], [[3, 4]]]));
    expect(y.shape).toEqual([2, 1, 3]);
    expectClose(y, tf.tensor3d([[[1.5, 2, 2]], [[3.5, 4, 6]]]));
    expect(() => l.forward(tf.ones([2, 5]))).toThrow(/Linear expects input \[..., 2\], got \[2,5\]/);
    l.dispose();
  });

  it('RMSNorm normalises the last axis', () => {
    const n = new RMSNorm(2, 0);
    n.weight.assign(tf.tensor1d([1, 2]));
    expectClose(n.forward(tf.tensor2d([[3, 4]])), [3 / Math.sqrt(12.5), 8 / Math.sqrt(12.5)]);
    n.dispose();
  });

  it('Embedding looks rows up and rejects ids out of range', () => {
    const e = new Embedding(3, 2);
    e.weight.assign(
      tf.tensor2d([
        [0, 1],
        [2, 3],
        [4, 5],
      ]),
    );
    expectClose(e.forward(tf.tensor2d([[2, 0]], undefined, 'int32')), [4, 5, 0, 1]);
    expect(() => e.forward(tf.tensor1d([3], 'int32'))).toThrow(/Token id 3 is outside the embedding table \[0, 3\)/);
    e.dispose();
  });
});

describeBackends('parameter layouts', () => {
  it('a transposed parameter keeps its checkpoint shape for names and loading, [in, out] in memory', () => {
    const l = new Linear(2, 3);
    l.weight.assign(
      tf.tensor2d([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
    );
    expect(l.weight.shape).toEqual([3, 2]);
    expect(l.weight.value.shape).toEqual([2, 3]);
    expect(l.weight.storageShape).toEqual([2, 3]);
    expectClose(l.weight.value, [1, 3, 5, 2, 4, 6]);
    const saved = l.stateDict();
    expectClose(saved.get('weight')!, [1, 2, 3, 4, 5, 6]);
    expect(saved.get('weight')!.shape).toEqual([3, 2]);
    tf.dispose([...saved.values()]);
    expectClose(l.forward(tf.tensor2d([[1, 1]])), [3, 7, 11]);
    expect(() => new Parameter([2, 2, 2], 0, { layout: 'transposed' })).toThrow(/Only 2-D parameters/);
    l.dispose();
  });

  it('a tied-head embedding looks up and projects like the plain one', async () => {
    const table = [
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
      [9, 10, 11],
    ];
    const plain = new Embedding(4, 3);
    const tied = new Embedding(4, 3, { tiedHead: true });
    plain.weight.assign(tf.tensor2d(table));
    tied.weight.assign(tf.tensor2d(table));
    const ids = tf.tensor2d([[3, 0, 2]], undefined, 'int32');
    expectClose(tied.forward(ids), plain.forward(ids));
    expectClose(tied.forward(ids), [9, 10, 11, 0, 1, 2, 6, 7, 8]);
    const h = tf.tensor3d([
      [
        [1, 0, -1],
        [0.5, 0.5, 0.5],
      ],
    ]);
    expect(tied.attend(h).shape).toEqual([1, 2, 4]);
    expectClose(tied.attend(h), plain.attend(h));
    expectClose(tied.attend(h), [-2, -2, -2, -2, 1.5, 6, 10.5, 15]);
    await expectNoTensorLeak(() => tf.dispose([tied.forward(ids), tied.attend(h)]));
    plain.dispose();
    tied.dispose();
  });
});

describeBackends('Parameter.assignValues', () => {
  it('uploads checkpoint-layout values, transposing in JavaScript for transposed parameters', () => {
    const values = Float32Array.from({ length: 3 * 70 }, (_, i) => i); // more than one 64-wide tile
    const plain = new Parameter([3, 70]);
    const transposed = new Parameter([3, 70], 0, { layout: 'transposed' });
    plain.assignValues(values);
    transposed.assignValues(values);
    expectClose(transposed.value, tf.transpose(plain.value));
    expectClose(transposed.checkpointValue(), values);
    expect(() => plain.assignValues(new Float32Array(5))).toThrow(/expects 210 values/);
    plain.dispose();
    transposed.dispose();
  });
});
