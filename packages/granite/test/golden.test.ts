import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import { fromPretrained, type GraniteModel } from '../src';
import { GOLDEN_MODELS, loadGolden, maxDiffAtRealPositions } from './golden_fixtures';

const TOLERANCE = 1e-4;

for (const name of GOLDEN_MODELS) {
  describeBackends(`golden ${name}`, (backend) => {
    const golden = loadGolden(name);
    const { input_ids: inputIds, attention_mask: mask } = golden.inputs;
    const [batch, seq] = [inputIds.length, inputIds[0].length];
    let granite: GraniteModel;
    let vocab: number;
    let hidden: number;

    beforeAll(async () => {
      granite = await fromPretrained(golden.dir, { backend });
      vocab = granite.config.vocab_size;
      hidden = granite.config.hidden_size;
    });
    afterAll(() => granite.dispose());

    it('matches the reference hidden states layer by layer and the logits of the padded batch', () => {
      const ids = tf.tensor2d(inputIds, undefined, 'int32');
      const m = tf.tensor2d(mask, undefined, 'float32');
      const out = granite.model.forward(ids, { attentionMask: m, hiddenStates: true });
      const layers = out.hiddenStates!.map((h) => h.dataSync());
      const perLayer = layers.map((h, i) =>
        maxDiffAtRealPositions(
          h,
          golden.hiddenStates.data.subarray(i * batch * seq * hidden, (i + 1) * batch * seq * hidden),
          mask,
          hidden,
        ),
      );
      // `!(d <= …)` so that a NaN counts as differing.
      const firstBad = perLayer.findIndex((d) => !(d <= 1e-3));
      expect({ firstDifferingLayer: firstBad, perLayer: perLayer.map((d) => d.toExponential(2)) }).toMatchObject({
        firstDifferingLayer: -1,
      });
      const diff = maxDiffAtRealPositions(out.logits!.dataSync(), golden.logits.data, mask, vocab);
      expect(diff).toBeLessThanOrEqual(TOLERANCE);
      tf.dispose([ids, m, out.logits!, ...out.hiddenStates!]);
    });

    it('matches the decode logits of one-token cached steps', () => {
      const steps = golden.decodeLogits.shape[1];
      const greedy = golden.expected.greedy.tokens;
      const cache = granite.makeCache(batch);
      let worst = 0;
      tf.tidy(() => {
        let logits = granite.model.forward(tf.tensor2d(inputIds, undefined, 'int32'), {
          cache,
          attentionMask: tf.tensor2d(mask, undefined, 'float32'),
          logits: 'last',
        }).logits!;
        for (let s = 0; s < steps; s++) {
          const values = logits.dataSync();
          for (let b = 0; b < batch; b++) {
            const base = (b * steps + s) * vocab;
            for (let v = 0; v < vocab; v++) {
              worst = Math.max(worst, Math.abs(values[b * vocab + v] - golden.decodeLogits.data[base + v]));
            }
          }
          if (s + 1 < steps) {
            const next = tf.tensor2d(
              greedy.map((row) => [row[s]]),
              [batch, 1],
              'int32',
            );
            logits = granite.model.forward(next, { cache, logits: 'last' }).logits!;
          }
        }
      });
      cache.dispose();
      expect(worst).toBeLessThanOrEqual(TOLERANCE);
    });

    it('reproduces the greedy continuations of the batch, eos ignored', async () => {
      const rows: number[][] = golden.inputs.prompts.map(() => []);
      for await (const step of granite.generateBatch(golden.inputs.prompts, {
        maxNewTokens: golden.expected.greedy.max_new_tokens,
        eosTokenIds: [],
      })) {
        step.forEach((id, b) => id !== null && rows[b].push(id));
      }
      expect(rows).toEqual(golden.expected.greedy.tokens);
    });

    it('prefill then steps and prefill then a multi-token continuation equal one full forward', () => {
      const prompt = golden.inputs.prompts[0];
      const full = tf.tidy(() => granite.model.forward(tf.tensor2d([prompt], undefined, 'int32')).logits!.dataSync());
      for (const split of [prompt.length - 3, Math.floor(prompt.length / 2)]) {
        const cache = granite.makeCache(1);
        const pieces = [
          prompt.slice(0, split),
          ...(split === prompt.length - 3 ? prompt.slice(split).map((t) => [t]) : [prompt.slice(split)]),
        ];
        let offset = 0;
        for (const piece of pieces) {
          const got = tf.tidy(() => granite.model.forward(tf.tensor2d([piece], undefined, 'int32'), { cache }).logits!.dataSync());
          let worst = 0;
          for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - full[offset * vocab + i]));
          expect(worst).toBeLessThanOrEqual(TOLERANCE);
          offset += piece.length;
        }
        cache.dispose();
      }
    });

    it('a restored snapshot continues exactly like recomputation', () => {
      const prompt = golden.inputs.prompts[0];
      const cache = granite.makeCache(1);
      tf.tidy(() => {
        granite.model.forward(tf.tensor2d([prompt.slice(0, 5)], undefined, 'int32'), { cache, logits: 'none' });
      });
      const snapshot = cache.clone();
      const first = tf.tidy(() =>
        granite.model.forward(tf.tensor2d([prompt.slice(5, 9)], undefined, 'int32'), { cache }).logits!.dataSync(),
      );
      cache.restore(snapshot);
      const again = tf.tidy(() =>
        granite.model.forward(tf.tensor2d([prompt.slice(5, 9)], undefined, 'int32'), { cache }).logits!.dataSync(),
      );
      expect(Array.from(again)).toEqual(Array.from(first));
      snapshot.dispose();
      cache.dispose();
    });

    it('leaks no tensor after a generation, an aborted one and a failed one', async () => {
      const prompt = golden.inputs.prompts[1];
      await expectNoTensorLeak(async () => {
        for await (const _ of granite.generate(prompt, { maxNewTokens: 4, temperature: 0.8, topK: 20, seed: 1 })) void _;
      }, 'generation');
      await expectNoTensorLeak(async () => {
        const controller = new AbortController();
        let n = 0;
        await expect(
          (async () => {
            for await (const _ of granite.generate(prompt, { maxNewTokens: 50, signal: controller.signal })) {
              if (++n === 2) controller.abort();
            }
          })(),
        ).rejects.toThrow(/abort/i);
        expect(n).toBe(2);
      }, 'aborted generation');
      await expectNoTensorLeak(async () => {
        await expect(
          (async () => {
            for await (const _ of granite.generate([vocab + 5], { maxNewTokens: 2 })) void _;
          })(),
        ).rejects.toThrow(/outside the vocabulary/);
      }, 'failed generation');
    });
  });
}
