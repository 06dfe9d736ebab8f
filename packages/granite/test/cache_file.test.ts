// A conversation's state written to a file and read back goes on exactly as the state in memory does.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@graniteflow/core/testing';
import { fromPretrained, loadCacheFile, saveCacheFile, stackCaches, type GraniteModel, type HybridCache } from '../src';
import { GOLDEN_DIR } from './helpers/golden';

async function tokens(model: GraniteModel, prompt: number[], cache: HybridCache, n = 8): Promise<number[]> {
  const out: number[] = [];
  for await (const id of model.generate(prompt, { maxNewTokens: n, temperature: 0, cache })) out.push(id);
  return out;
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cache-file-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describeBackends('cache files', (backend) => {
  let model: GraniteModel;
  beforeAll(async () => {
    model = await fromPretrained(path.join(GOLDEN_DIR, 'tiny_moe'), { backend });
  });
  afterAll(() => model.dispose());

  test('save, load, continue: the same tokens as continuing in memory; a padded batch keeps its mask', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const live = model.makeCache();
    const first = await tokens(model, [5, 17, 42, 8, 99, 3], live);
    const file = path.join(tmp, `${backend}.safetensors`);
    saveCacheFile(live, file);
    const loaded = loadCacheFile(file, model.model.layerKinds);
    expect([loaded.seqLength, loaded.batchSize, loaded.byteSize > 0]).toEqual([live.seqLength, 1, true]);
    const next = [first[first.length - 1], 11, 12];
    expect(await tokens(model, next, loaded)).toEqual(await tokens(model, next, live));

    const short = model.makeCache();
    await tokens(model, [7, 8], short, 2);
    const batch = stackCaches([live, short]);
    saveCacheFile(batch, file);
    const back = loadCacheFile(file, model.model.layerKinds);
    expect(back.mask!.arraySync()).toEqual(batch.mask!.arraySync());
    expect(() => loadCacheFile(file, ['mamba', 'attention'])).toThrow(/holds the state of a model with layers/);
    for (const c of [live, loaded, short, batch, back]) c.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
