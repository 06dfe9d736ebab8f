import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, randomFloats } from '@graniteflow/core/testing';
import { AdamW } from '../src';

/** PyTorch's AdamW step in float64, written out: the oracle. */
function adamwReference(
  p: Float64Array,
  grads: Float64Array[],
  { lr, beta1, beta2, eps, wd }: { lr: number; beta1: number; beta2: number; eps: number; wd: number },
): Float64Array {
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  const w = Float64Array.from(p);
  grads.forEach((g, step) => {
    const t = step + 1;
    for (let i = 0; i < w.length; i++) {
      w[i] *= 1 - lr * wd;
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const mHat = m[i] / (1 - beta1 ** t);
      const vHat = v[i] / (1 - beta2 ** t);
      w[i] -= (lr * mHat) / (Math.sqrt(vHat) + eps);
    }
  });
  return w;
}

describeBackends('AdamW', () => {
  it('follows the PyTorch update over several steps: decoupled decay on matrices, none on vectors by default', () => {
    const hyper = { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6, wd: 0.3 };
    const matrix = tf.variable(tf.tensor2d(randomFloats(12, 1), [3, 4]));
    const vector = tf.variable(tf.tensor1d(randomFloats(4, 2)));
    const opt = new AdamW({ learningRate: hyper.lr, beta1: hyper.beta1, beta2: hyper.beta2, epsilon: hyper.eps, weightDecay: hyper.wd });
    const gm = [3, 4, 5, 6].map((s) => Float64Array.from(randomFloats(12, s)));
    const gv = [7, 8, 9, 10].map((s) => Float64Array.from(randomFloats(4, s)));
    const expectedMatrix = adamwReference(Float64Array.from(matrix.dataSync()), gm, hyper);
    const expectedVector = adamwReference(Float64Array.from(vector.dataSync()), gv, { ...hyper, wd: 0 });
    for (let s = 0; s < 4; s++) {
      const grads = { [matrix.name]: tf.tensor2d(Float32Array.from(gm[s]), [3, 4]), [vector.name]: tf.tensor1d(Float32Array.from(gv[s])) };
      opt.applyGradients(grads);
      tf.dispose(Object.values(grads));
    }
    expect(opt.iterations).toBe(4);
    expectClose(matrix, Array.from(expectedMatrix), { atol: 2e-6 });
    expectClose(vector, Array.from(expectedVector), { atol: 2e-6 });
    opt.dispose();
    tf.dispose([matrix, vector]);
  });

  it('with no gradient signal only the decay acts: p·(1 − lr·λ) on matrices, vectors unchanged', () => {
    const matrix = tf.variable(tf.fill([2, 2], 2));
    const vector = tf.variable(tf.fill([2], 2));
    const opt = new AdamW({ learningRate: 0.1, weightDecay: 0.5 });
    const grads = { [matrix.name]: tf.zeros([2, 2]), [vector.name]: tf.zeros([2]) };
    opt.applyGradients(grads);
    expectClose(matrix, [1.9, 1.9, 1.9, 1.9], { atol: 1e-6 });
    expectClose(vector, [2, 2], { atol: 0 });
    tf.dispose([...Object.values(grads), matrix, vector]);
    opt.dispose();
  });

  it('equals tf.train.adam when weightDecay is 0', () => {
    const target = tf.tensor1d([1, -2, 3, 0.5]);
    const a = tf.variable(tf.zeros([4]));
    const b = tf.variable(tf.zeros([4]));
    const ours = new AdamW({ learningRate: 0.1, weightDecay: 0 });
    const theirs = tf.train.adam(0.1, 0.9, 0.999, 1e-8);
    for (let s = 0; s < 10; s++) {
      ours.minimize(() => tf.sum(tf.square(tf.sub(a, target))) as tf.Scalar, false, [a]);
      theirs.minimize(() => tf.sum(tf.square(tf.sub(b, target))) as tf.Scalar, false, [b]);
    }
    expectClose(a, b.dataSync(), { atol: 1e-5 });
    tf.dispose([target, a, b]);
    ours.dispose();
    theirs.dispose();
  });

  it('minimize trains, a step leaves no tensor behind, and getWeights / setWeights resume exactly', async () => {
    const x = tf.tensor2d(randomFloats(16, 11), [4, 4]);
    const y = tf.tensor2d(randomFloats(8, 12), [4, 2]);
    const run = (w: tf.Variable, opt: AdamW, steps: number) => {
      for (let s = 0; s < steps; s++) opt.minimize(() => tf.mean(tf.square(tf.sub(tf.matMul(x, w), y))) as tf.Scalar, false, [w]);
    };
    const init = randomFloats(8, 13);
    const straight = tf.variable(tf.tensor2d(init, [4, 2]));
    const o1 = new AdamW({ learningRate: 0.05 });
    run(straight, o1, 2);
    const live = tf.memory().numTensors;
    run(straight, o1, 3);
    expect(tf.memory().numTensors).toBe(live);

    const resumed = tf.variable(tf.tensor2d(init, [4, 2]));
    const o2 = new AdamW({ learningRate: 0.05 });
    run(resumed, o2, 2);
    const saved = (await o2.getWeights()).map(({ name, tensor }) => ({ name, tensor: tf.clone(tensor) }));
    o2.dispose();
    const o3 = new AdamW({ learningRate: 0.05 });
    await o3.setWeights(saved);
    expect(o3.iterations).toBe(2);
    run(resumed, o3, 3);
    expectClose(resumed, straight.dataSync(), { atol: 1e-6 });
    tf.dispose([x, y, straight, resumed, ...saved.map((s) => s.tensor)]);
    [o1, o3].forEach((o) => o.dispose());
  });

  it('rejects out-of-range hyper-parameters by name', () => {
    expect(() => new AdamW({ beta1: 1 })).toThrow(/AdamW beta1 is out of range: 1/);
    expect(() => new AdamW({ weightDecay: -0.1 })).toThrow(/AdamW weightDecay is out of range: -0.1/);
    expect(() => new AdamW({ epsilon: 0 })).toThrow(/AdamW epsilon is out of range: 0/);
  });
});
