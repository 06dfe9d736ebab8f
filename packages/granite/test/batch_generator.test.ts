// Continuous batching: every sequence generated in a batch with others — joining and leaving at
// different times, prompts prefilled in chunks between decode steps — gets the tokens it gets alone.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@graniteflow/core/testing';
import {
  BatchGenerator,
  fromPretrained,
  modelFamily,
  selectRows,
  stackCaches,
  writeRandomCheckpoint,
  type BatchSequenceOptions,
  type GraniteModel,
} from '../src';
import { GOLDEN_DIR } from './helpers/golden';

/** Prompts of different lengths (ids below every golden vocabulary). */
const PROMPTS = [
  [5, 17, 42, 8, 99, 3, 61, 27, 14],
  [250, 7],
  [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
  [300, 1, 300, 2, 300, 3],
  [77],
];

async function alone(model: GraniteModel, prompt: readonly number[], options: BatchSequenceOptions): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of model.generate(prompt, options)) ids.push(id);
  return ids;
}

async function collect(tokens: AsyncIterable<number>): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of tokens) ids.push(id);
  return ids;
}

/** A copy of a golden model folder with some config fields changed. */
function variant(name: string, change: Record<string, unknown>, tmp: string): string {
  const folder = path.join(tmp, `${name}-${Object.keys(change).join('-')}`);
  fs.cpSync(path.join(GOLDEN_DIR, name), folder, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify({ ...config, ...change }));
  return folder;
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-batch-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A random `granite` (GraniteForCausalLM) checkpoint, written once. */
function denseFolder(root: string): string {
  const folder = path.join(root, 'granite-dense');
  if (fs.existsSync(folder)) return folder;
  const config = modelFamily('granite').parseConfig({
    model_type: 'granite',
    vocab_size: 512,
    hidden_size: 48,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    embedding_multiplier: 4,
    residual_multiplier: 0.4,
    attention_multiplier: 0.25,
    logits_scaling: 2,
  });
  writeRandomCheckpoint(folder, config, { seed: 9, std: 0.4, dtype: 'F32' });
  return folder;
}

describeBackends('BatchGenerator', (backend) => {
  const models: [string, () => string][] = [
    ['tiny_moe', () => path.join(GOLDEN_DIR, 'tiny_moe')],
    ['chat_tiny', () => path.join(GOLDEN_DIR, 'chat_tiny')],
    // RoPE: each row's positions must count its own tokens, not the batch's padding.
    ['tiny_moe with RoPE', () => variant('tiny_moe', { position_embedding_type: 'rope' }, tmp)],
    // The dense family: every layer attention, RoPE, through the same batching.
    ['a granite (dense) model', () => denseFolder(tmp)],
  ];

  describe.each(models)('%s', (_name, folder) => {
    let model: GraniteModel;
    beforeAll(async () => {
      model = await fromPretrained(folder(), { backend });
    });
    afterAll(() => model.dispose());

    test('greedy and seeded sequences that join and leave at different times get the tokens they get alone', async () => {
      const tensorsBefore = tf.memory().numTensors;
      const options = (i: number): BatchSequenceOptions =>
        i % 2 === 0 ? { maxNewTokens: 6 + 3 * i, temperature: 0 } : { maxNewTokens: 5 + 2 * i, temperature: 0.9, topK: 20, seed: 100 + i };
      const expected = await Promise.all(PROMPTS.map((p, i) => alone(model, p, options(i))));

      // Three at a time, prompts fed 4 tokens per step between decode steps: the batch keeps changing.
      const batcher = new BatchGenerator(model, { maxBatch: 3, prefillChunk: 4 });
      const first = PROMPTS.slice(0, 3).map((p, i) => collect(batcher.generate(p, options(i))));
      await new Promise((resolve) => setTimeout(resolve, 5));
      const later = PROMPTS.slice(3).map((p, i) => collect(batcher.generate(p, options(3 + i))));
      const got = await Promise.all([...first, ...later]);
      expect(got).toEqual(expected);
      const stats = batcher.stats;
      expect(stats).toMatchObject({ active: 0, waiting: 0, stateBytes: 0 });
      // Batched for real: decode steps ran several sequences at once.
      expect(stats.decodeTokens / stats.decodeSteps).toBeGreaterThan(1.5);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    });

    test("a sequence continuing from a caller's cache leaves it as generate does; a cancelled one ends alone", async () => {
      const tensorsBefore = tf.memory().numTensors;
      const greedy = { maxNewTokens: 7, temperature: 0 };
      const theirs = model.makeCache();
      const ours = model.makeCache();
      await alone(model, PROMPTS[0], { ...greedy, cache: theirs });
      const batcher = new BatchGenerator(model, { maxBatch: 4, prefillChunk: 5 });
      const controller = new AbortController();
      const cancelled = (async () => {
        let n = 0;
        for await (const _ of batcher.generate(PROMPTS[2], { maxNewTokens: 200, temperature: 0, signal: controller.signal }))
          if (++n === 3) controller.abort();
      })();
      const [withCache, other] = await Promise.all([
        collect(batcher.generate(PROMPTS[0], { ...greedy, cache: ours })),
        collect(batcher.generate(PROMPTS[1], greedy)),
        expect(cancelled).rejects.toThrow(/abort/i),
      ]);
      expect(withCache).toEqual(await alone(model, PROMPTS[0], greedy));
      expect(other).toEqual(await alone(model, PROMPTS[1], greedy));
      expect(ours.seqLength).toBe(theirs.seqLength);
      // Both caches go on to the same tokens.
      const next = [withCache[withCache.length - 1], 9, 10];
      expect(await alone(model, next, { ...greedy, cache: ours })).toEqual(await alone(model, next, { ...greedy, cache: theirs }));
      ours.dispose();
      theirs.dispose();
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    });
  });

  test('stackCaches and selectRows: rows keep their own state, and leading padding is dropped', async () => {
    const model = await fromPretrained(path.join(GOLDEN_DIR, 'tiny_moe'), { backend });
    const caches = [PROMPTS[0], PROMPTS[1]].map((p) => {
      const cache = model.makeCache();
      tf.dispose(model.model.forward(tf.tensor2d(p, [1, p.length], 'int32'), { cache, logits: 'none' }).logits);
      return cache;
    });
    const stacked = stackCaches(caches);
    expect([stacked.batchSize, stacked.seqLength]).toEqual([2, PROMPTS[0].length]);
    expect((stacked.mask!.arraySync() as number[][])[1]).toEqual([...new Array(PROMPTS[0].length - 2).fill(0), 1, 1]);
    const back = selectRows(stacked, [1]);
    expect([back.batchSize, back.seqLength, back.mask]).toEqual([1, 2, null]);
    for (let i = 0; i < back.layers.length; i++) {
      const [a, b] = [back.layers[i], caches[1].layers[i]];
      const held = (c: typeof a) => ('ssmState' in c ? tf.clone(c.ssmState) : tf.slice(c.keys!, [0, 0, 0, 0], [1, -1, 2, -1]));
      const tensors = [held(a), held(b)];
      expect(tensors[0].arraySync()).toEqual(tensors[1].arraySync());
      tf.dispose(tensors);
    }
    expect(() => selectRows(stacked, [2])).toThrow(/row 2 is not in a batch of 2/);
    for (const c of [...caches, stacked, back]) c.dispose();
    model.dispose();
  });
});
