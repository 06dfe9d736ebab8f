import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@graniteflow/core/testing';
import { causalLmLoss, GraniteMoeHybridForCausalLM, parseConfig } from '@graniteflow/granite';
import { AdamW, packTokenStream, trainStep, warmupCosine } from '../src';

const GOLDEN = path.resolve(__dirname, '../../../fixtures/golden');
const CONFIG = parseConfig(JSON.parse(fs.readFileSync(path.join(GOLDEN, 'tiny_moe', 'config.json'), 'utf8')));

describeBackends('training a Granite hybrid with AdamW', () => {
  it('packed documents, accumulation, clipping, warmup + cosine and the aux loss: the loss falls, memory stays flat', () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 1 });
    // Documents of mixed lengths from a tiny "language": each is a run of a repeating phrase.
    const phrase = [17, 42, 99, 5, 230, 64, 12];
    const docs = Array.from({ length: 12 }, (_, d) => Array.from({ length: 9 + 3 * (d % 4) }, (_, i) => phrase[(i + d) % phrase.length]));
    const batches = [...packTokenStream(docs, { seqLength: 16, batchSize: 2, separator: 317 })];
    expect(batches.length).toBeGreaterThanOrEqual(3);
    const steps = 8;
    const schedule = warmupCosine({ peak: 0.01, warmupSteps: 1, totalSteps: steps });
    const optimizer = new AdamW({ weightDecay: 0.1 });
    const losses: number[] = [];
    let live = -1;
    for (let step = 0; step < steps; step++) {
      const batch = batches[step % batches.length];
      // Two micro-batches of one row each: the step's gradient is their mean.
      const micro = [0, 1].map((r) => ({ inputs: [batch.inputs[r]], labels: [batch.labels[r]] }));
      const result = trainStep(optimizer, micro, (b) => causalLmLoss(model, b), {
        variables: model.trainableVariables(),
        maxGradNorm: 1,
        learningRate: schedule(step),
      });
      losses.push(result.loss);
      if (step === 1) live = tf.memory().numTensors; // AdamW's moments exist from step 0 on
      if (step > 1) expect(tf.memory().numTensors).toBe(live);
    }
    expect(losses[steps - 1]).toBeLessThan(losses[0] * 0.5);
    optimizer.dispose();
    model.dispose();
  });
});
