// JSON-constrained generation and token log-probabilities through generate and BatchGenerator, on a
// real (random-weight) model whose unconstrained output is nothing like JSON.
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@graniteflow/core/testing';
import {
  BatchGenerator,
  compileJsonSchema,
  fromPretrained,
  jsonConstraint,
  JsonConstraint,
  tokenTrieOf,
  type GraniteModel,
  type TokenLogprob,
} from '../src';
import { CHAT_TINY_DIR } from './helpers/golden';

const SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 6 }, age: { type: 'integer' }, ok: { type: 'boolean' } },
  required: ['name', 'ok'],
  additionalProperties: false,
};

describeBackends('constrained generation', (backend) => {
  let model: GraniteModel;
  beforeAll(async () => {
    model = await fromPretrained(CHAT_TINY_DIR, { backend });
  });
  afterAll(() => model.dispose());

  const constraint = () => new JsonConstraint(compileJsonSchema(SCHEMA), tokenTrieOf(model.tokenizer!), model.eosTokenIds);
  const decode = (ids: number[]) => model.tokenizer!.decode(ids.filter((id) => !model.eosTokenIds.includes(id)));
  const check = (text: string) => {
    const value = JSON.parse(text) as Record<string, unknown>;
    expect(typeof value.name).toBe('string');
    expect((value.name as string).length).toBeLessThanOrEqual(6);
    expect(typeof value.ok).toBe('boolean');
    if ('age' in value) expect(Number.isInteger(value.age)).toBe(true);
    expect(Object.keys(value).every((k) => ['name', 'age', 'ok'].includes(k))).toBe(true);
  };

  test('sampled outputs under a JSON schema parse and validate; unconstrained ones do not even parse', async () => {
    const ids = model.encodePrompt('Hello');
    const free: number[] = [];
    for await (const id of model.generate(ids, { maxNewTokens: 40, temperature: 0 })) free.push(id);
    expect(() => JSON.parse(decode(free))).toThrow();
    for (const seed of [1, 2, 3]) {
      const c = constraint();
      const out: number[] = [];
      for await (const id of model.generate(ids, { maxNewTokens: 200, temperature: 1, seed, constraint: c })) out.push(id);
      expect(c.done).toBe(true);
      check(decode(out));
    }
    // The same through the batch, several at once.
    const batcher = new BatchGenerator(model, { maxBatch: 3 });
    const outs = await Promise.all(
      [4, 5, 6].map(async (seed) => {
        const out: number[] = [];
        for await (const id of batcher.generate(ids, { maxNewTokens: 200, temperature: 1, seed, constraint: constraint() })) out.push(id);
        return decode(out);
      }),
    );
    outs.forEach(check);
    // json_object through the request-level helper: some object.
    const c = jsonConstraint(model, { type: 'json_object' })!;
    const out: number[] = [];
    for await (const id of model.generate(ids, { maxNewTokens: 200, temperature: 1, seed: 9, constraint: c })) out.push(id);
    expect(typeof JSON.parse(decode(out))).toBe('object');
    expect(jsonConstraint(model, { type: 'text' })).toBeNull();
    expect(() => jsonConstraint(model, { type: 'json_schema', json_schema: { schema: { type: 'string', pattern: 'a+' } } })).toThrow(
      /pattern/,
    );
  });

  test('logprobs: the log-softmax of the logits at each generated token, and the most likely tokens', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const ids = model.encodePrompt('Once upon');
    const entries: TokenLogprob[] = [];
    const out: number[] = [];
    for await (const id of model.generate(ids, { maxNewTokens: 3, temperature: 0, logprobs: { top: 5, onToken: (e) => entries.push(e) } }))
      out.push(id);
    expect(entries.map((e) => e.id)).toEqual(out);
    // Independently: the full forward's last logits, log-softmax in float64.
    for (let step = 0; step < out.length; step++) {
      const context = [...ids, ...out.slice(0, step)];
      const logits = tf.tidy(() => model.model.forward(tf.tensor2d(context, [1, context.length], 'int32'), { logits: 'last' }).logits!);
      const row = Array.from(logits.dataSync()).slice(0, model.vocabLimit);
      logits.dispose();
      const max = Math.max(...row);
      const logZ = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      const order = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]);
      expect(entries[step].logprob).toBeCloseTo(row[out[step]] - logZ, 3);
      expect(entries[step].top.map((t) => t.id)).toEqual(order.slice(0, 5).map(([, i]) => i));
      expect(entries[step].top[0].logprob).toBeCloseTo(order[0][0] - logZ, 3);
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
