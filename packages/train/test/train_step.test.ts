import * as tf from '@tensorflow/tfjs-core';
import { Linear, initBackend } from '@graniteflow/core';
import { describeBackends, expectClose, randomFloats } from '@graniteflow/core/testing';
import { AdamW, clipByGlobalNorm, globalNorm, packTokenStream, trainStep, warmupCosine } from '../src';

describe('clipByGlobalNorm', () => {
  beforeAll(() => initBackend('cpu'));

  it('scales every gradient by maxNorm / (norm + 1e-6) when the global norm is larger, else copies', () => {
    const grads = { a: tf.tensor1d([3, 0]), b: tf.tensor2d([[0, 4]]) }; // global norm 5
    expect(globalNorm(grads)).toBeCloseTo(5, 6);
    const clipped = clipByGlobalNorm(grads, 1);
    expect(clipped.norm).toBeCloseTo(5, 6);
    const f = 1 / (5 + 1e-6);
    expectClose(clipped.grads.a, [3 * f, 0], { atol: 1e-7 });
    expectClose(clipped.grads.b, [0, 4 * f], { atol: 1e-7 });
    const kept = clipByGlobalNorm(grads, 10);
    expectClose(kept.grads.a, [3, 0], { atol: 0 });
    expect(() => clipByGlobalNorm(grads, 0)).toThrow(/maxNorm must be a positive number, got 0/);
    tf.dispose([...Object.values(grads), ...Object.values(clipped.grads), ...Object.values(kept.grads)]);
  });
});

describe('warmupCosine', () => {
  it('rises linearly from 0, peaks at the end of warmup, halves at mid-decay and ends at min', () => {
    const lr = warmupCosine({ peak: 1e-3, warmupSteps: 10, totalSteps: 110, min: 1e-4 });
    expect(lr(0)).toBe(0);
    expect(lr(5)).toBeCloseTo(5e-4, 12);
    expect(lr(10)).toBeCloseTo(1e-3, 12);
    expect(lr(60)).toBeCloseTo((1e-3 + 1e-4) / 2, 12);
    expect(lr(110)).toBeCloseTo(1e-4, 12);
    expect(lr(500)).toBeCloseTo(1e-4, 12);
    expect(() => warmupCosine({ peak: 1, warmupSteps: 5, totalSteps: 5 })).toThrow(/0 ≤ warmupSteps < totalSteps, got 5 and 5/);
    expect(() => warmupCosine({ peak: 1, warmupSteps: 0, totalSteps: 5, min: 2 })).toThrow(/0 ≤ min ≤ peak/);
  });
});

describe('packTokenStream', () => {
  it('joins documents with the separator and cuts full rows whose labels are the next tokens', () => {
    const docs = [
      [1, 2, 3],
      [4, 5],
      [6, 7, 8, 9],
    ];
    // stream: 1 2 3 0 4 5 0 6 7 8 9 → windows of 4 sharing an edge token
    const batches = [...packTokenStream(docs, { seqLength: 3, batchSize: 2, separator: 0, keepLast: true })];
    expect(batches).toEqual([
      {
        inputs: [
          [1, 2, 3],
          [0, 4, 5],
        ],
        labels: [
          [2, 3, 0],
          [4, 5, 0],
        ],
      },
      { inputs: [[0, 6, 7]], labels: [[6, 7, 8]] },
    ]);
    expect([...packTokenStream(docs, { seqLength: 3, batchSize: 2, separator: 0 })]).toHaveLength(1);
    expect(() => [...packTokenStream(docs, { seqLength: 0, batchSize: 1 })]).toThrow(/seqLength must be a whole number ≥ 1, got 0/);
  });

  it('packs a corpus-sized document (a million tokens) in one pass, every window in order', () => {
    // Cutting each row off the front of the stream copied the rest every time: minutes for a Bible.
    const doc = Array.from({ length: 1_000_000 }, (_, i) => i);
    const started = Date.now();
    let rows = 0;
    for (const { inputs, labels } of packTokenStream([doc], { seqLength: 128, batchSize: 8 })) {
      for (let r = 0; r < inputs.length; r++, rows++) {
        if (inputs[r][0] !== rows * 128 || labels[r][127] !== rows * 128 + 128) throw new Error(`row ${rows} starts at ${inputs[r][0]}`);
      }
    }
    expect(rows).toBe(Math.floor((1_000_000 - 1) / 128 / 8) * 8);
    // A complexity guard, not a benchmark: linear takes ~0.1 s here, the quadratic cut took 40 s.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describeBackends('trainStep', () => {
  const x = () => tf.tensor2d(randomFloats(4 * 3, 21), [4, 3]);
  const y = () => tf.tensor2d(randomFloats(4 * 2, 22), [4, 2]);

  function model(): Linear {
    const lin = new Linear(3, 2, { bias: true }).initialize('hf', { seed: 3, std: 0.5 });
    return lin;
  }

  const mse = (lin: Linear, xs: tf.Tensor, ys: tf.Tensor) => tf.tidy(() => tf.mean(tf.square(tf.sub(lin.forward(xs), ys))) as tf.Scalar);

  it('accumulating two micro-batches equals one step on the whole batch', () => {
    const [xs, ys] = [x(), y()];
    const whole = model();
    const accumulated = model();
    const o1 = new AdamW({ learningRate: 0.1 });
    const o2 = new AdamW({ learningRate: 0.1 });
    const r1 = trainStep(o1, [[xs, ys]], ([a, b]) => mse(whole, a, b), { variables: whole.trainableVariables() });
    const halves = [0, 2].map((r) => [tf.slice(xs, [r, 0], [2, 3]), tf.slice(ys, [r, 0], [2, 2])]);
    const r2 = trainStep(o2, halves, ([a, b]) => mse(accumulated, a, b), { variables: accumulated.trainableVariables() });
    expect(r2.loss).toBeCloseTo(r1.loss, 6);
    expect(r2.gradNorm).toBeCloseTo(r1.gradNorm, 5);
    expectClose(accumulated.weight.value, whole.weight.value.dataSync(), { atol: 1e-6 });
    expectClose(accumulated.bias!.value, whole.bias!.value.dataSync(), { atol: 1e-6 });
    tf.dispose([xs, ys, ...halves.flat()]);
    [whole, accumulated].forEach((m) => m.dispose());
    [o1, o2].forEach((o) => o.dispose());
  });

  it('clips, sets the learning rate, lowers the loss over steps and leaves no tensor behind', () => {
    const [xs, ys] = [x(), y()];
    const lin = model();
    const opt = new AdamW({ learningRate: 1 });
    const schedule = warmupCosine({ peak: 0.05, warmupSteps: 2, totalSteps: 40 });
    const first = trainStep(opt, [[xs, ys]], ([a, b]) => mse(lin, a, b), {
      variables: lin.trainableVariables(),
      maxGradNorm: 1e-3,
      learningRate: schedule(0),
    });
    expect(opt.learningRate).toBe(0);
    expect(first.gradNorm).toBeGreaterThan(1e-3); // the norm before clipping is reported
    const live = tf.memory().numTensors;
    let last = first;
    for (let step = 1; step < 40; step++) {
      last = trainStep(opt, [[xs, ys]], ([a, b]) => mse(lin, a, b), {
        variables: lin.trainableVariables(),
        maxGradNorm: 1,
        learningRate: schedule(step),
      });
      expect(tf.memory().numTensors).toBe(live);
    }
    expect(last.loss).toBeLessThan(first.loss * 0.5);
    tf.dispose([xs, ys]);
    lin.dispose();
    opt.dispose();
  });

  it('a NaN loss throws before touching the weights', () => {
    const lin = model();
    const before = lin.weight.value.dataSync().slice();
    const opt = new AdamW();
    const live = tf.memory().numTensors;
    expect(() =>
      trainStep(opt, [0], () => tf.tidy(() => tf.mul(tf.sum(lin.weight.value), NaN) as tf.Scalar), { variables: lin.trainableVariables() }),
    ).toThrow(/the loss is NaN; the update was not applied/);
    expect(tf.memory().numTensors).toBe(live);
    expect(lin.weight.value.dataSync()).toEqual(before);
    expect(() => trainStep(opt, [], () => tf.scalar(0))).toThrow(/at least one micro-batch/);
    lin.dispose();
    opt.dispose();
  });
});
