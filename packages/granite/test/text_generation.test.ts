import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import { fromPretrained, type GraniteModel, type TextEvent } from '../src';
import { CHAT_TINY_DIR, readJson } from './helpers/golden';

interface TextCase {
  kind: 'plain' | 'chat';
  prompt?: string;
  messages?: { role: 'user'; content: string }[];
  prompt_ids: number[];
  new_ids: number[];
  text: string;
}
const expectations = readJson<{ max_new_tokens: number; eos: number; cases: TextCase[] }>(
  path.join(CHAT_TINY_DIR, 'text_expectations.json'),
);

async function collect(events: AsyncGenerator<TextEvent>) {
  const deltas: string[] = [];
  let done: Extract<TextEvent, { type: 'done' }> | undefined;
  for await (const e of events) {
    if (e.type === 'text') deltas.push(e.text);
    else done = e;
  }
  return { deltas, done: done! };
}

describeBackends('text generation on chat_tiny', (backend) => {
  let granite: GraniteModel;
  beforeAll(async () => {
    granite = await fromPretrained(CHAT_TINY_DIR, { backend });
  });
  afterAll(() => granite.dispose());

  it.each(expectations.cases.map((c, i) => [`${c.kind} ${i}`, c] as const))(
    '%s: greedy text as expected, streamed in pieces that add up',
    async (_name, c) => {
      const ids = c.kind === 'chat' ? granite.encodePrompt(c.messages!, { chat: true }) : granite.encodePrompt(c.prompt!);
      expect(ids).toEqual(c.prompt_ids);
      const { deltas, done } = await collect(granite.streamText(ids, { maxNewTokens: expectations.max_new_tokens }));
      expect(done.tokenIds).toEqual(c.new_ids);
      expect(done.text).toBe(c.text);
      expect(deltas.join('')).toBe(c.text);
      expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false);
      expect(done.finishReason).toBe(c.new_ids.includes(expectations.eos) ? 'stop' : 'length');
    },
  );

  it('cuts at a stop string and reports it', async () => {
    const c = expectations.cases[0];
    const stop = c.text.slice(5, 9);
    const { deltas, done } = await collect(granite.streamText(c.prompt_ids, { maxNewTokens: 8, stopStrings: [stop] }));
    expect(done.text).toBe(c.text.slice(0, 5));
    expect(deltas.join('')).toBe(done.text);
    expect(done).toMatchObject({ finishReason: 'stop', stopString: stop });
  });

  it('samples reproducibly from a seed, never a padded vocabulary row', async () => {
    const run = async (seed: number) => {
      const out: number[] = [];
      for await (const id of granite.generate(expectations.cases[1].prompt_ids, {
        maxNewTokens: 12,
        temperature: 1.5,
        seed,
        eosTokenIds: [],
      }))
        out.push(id);
      return out;
    };
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(Math.max(...a, ...c)).toBeLessThan(granite.vocabLimit);
    expect(granite.vocabLimit).toBe(984);
  });

  it('a batch of unequal prompts continues each row as if alone', async () => {
    const prompts = expectations.cases.slice(0, 3).map((c) => c.prompt_ids);
    const rows: number[][] = prompts.map(() => []);
    for await (const step of granite.generateBatch(prompts, { maxNewTokens: 8, eosTokenIds: [] })) {
      step.forEach((id, i) => id !== null && rows[i].push(id));
    }
    expect(rows).toEqual(expectations.cases.slice(0, 3).map((c) => c.new_ids));
  });

  it('chunked prefill gives the tokens of one pass, with padding spanning several chunks', async () => {
    const prompts = expectations.cases.slice(0, 3).map((c) => c.prompt_ids);
    const widths = prompts.map((p) => p.length);
    expect(Math.max(...widths) - Math.min(...widths)).toBeGreaterThan(3); // a row's padding covers whole chunks of 3
    const rows: number[][] = prompts.map(() => []);
    for await (const step of granite.generateBatch(prompts, { maxNewTokens: 8, eosTokenIds: [], prefillChunk: 3 })) {
      step.forEach((id, i) => id !== null && rows[i].push(id));
    }
    expect(rows).toEqual(expectations.cases.slice(0, 3).map((c) => c.new_ids));
    const cache = granite.makeCache();
    for await (const _ of granite.generate(prompts[0], { maxNewTokens: 1, cache, prefillChunk: 2 })) void _;
    expect(cache.seqLength).toBe(prompts[0].length); // every prompt token went in once
    cache.dispose();
  });

  it('refuses a prefill chunk that is not a positive integer, and sees an abort between chunks', async () => {
    const ids = expectations.cases[0].prompt_ids;
    await expect(granite.generate(ids, { prefillChunk: 0 }).next()).rejects.toThrow('prefillChunk must be a positive integer, got 0.');
    await expect(granite.generate(ids, { prefillChunk: 1.5 }).next()).rejects.toThrow('prefillChunk must be a positive integer, got 1.5.');
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('stopped during prefill')), 0);
    const before = tf.memory().numTensors;
    await expect(granite.generate(ids, { prefillChunk: 1, signal: controller.signal }).next()).rejects.toThrow('stopped during prefill');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('stops when maxContext is full and refuses a prompt that leaves it no room', async () => {
    const c = expectations.cases[1];
    const n = c.prompt_ids.length;
    const got: number[] = [];
    for await (const id of granite.generate(c.prompt_ids, { maxNewTokens: 8, eosTokenIds: [], maxContext: n + 3 })) got.push(id);
    expect(got).toEqual(c.new_ids.slice(0, 3));
    await expect(granite.generate(c.prompt_ids, { maxContext: n }).next()).rejects.toThrow(
      `${n} prompt tokens leave no room for a new token in a context of ${n}: shorten the prompt or raise maxContext (at most max_position_embeddings = 4096).`,
    );
    await expect(granite.generate(c.prompt_ids, { maxContext: 4097 }).next()).rejects.toThrow(
      "maxContext 4097 is more than the model's max_position_embeddings (4096 positions).",
    );
    const cache = granite.makeCache();
    for await (const _ of granite.generate(c.prompt_ids, { maxNewTokens: 1, cache })) void _;
    await expect(granite.generate([1, 2], { cache, maxContext: n + 2 }).next()).rejects.toThrow(
      `${n + 2} tokens (${n} cached, the rest prompt) leave no room`,
    );
    cache.dispose();
  });

  it('a conversation continues from its cache with only the new tokens', async () => {
    const c = expectations.cases[4];
    const cache = granite.makeCache();
    const first: number[] = [];
    for await (const id of granite.generate(c.prompt_ids, { maxNewTokens: 4, cache, eosTokenIds: [] })) first.push(id);
    expect(cache.seqLength).toBe(c.prompt_ids.length + 3);
    const history = [...c.prompt_ids, ...first];
    const followUp = granite.encodePrompt('more');
    const resumed: number[] = [];
    for await (const id of granite.generate([first[3], ...followUp], { maxNewTokens: 4, cache, eosTokenIds: [] })) resumed.push(id);
    const fresh: number[] = [];
    for await (const id of granite.generate([...history, ...followUp], { maxNewTokens: 4, eosTokenIds: [] })) fresh.push(id);
    expect(resumed).toEqual(fresh);
    cache.dispose();
  });

  it('lets timers run between tokens: one set before a generation fires while it runs', async () => {
    let producedWhenFired: number | null = null;
    let produced = 0;
    setTimeout(() => (producedWhenFired = produced), 0);
    for await (const _ of granite.generate(expectations.cases[1].prompt_ids, { maxNewTokens: 40, eosTokenIds: [] })) produced++;
    expect(produced).toBe(40);
    expect(producedWhenFired).not.toBeNull();
    expect(producedWhenFired!).toBeLessThan(40);
  });

  it('sees an abort from a timer (as from a Ctrl-C handler) before the next token, and frees its tensors', async () => {
    const controller = new AbortController();
    let produced = 0;
    let producedWhenAborted: number | null = null;
    const timer = setTimeout(() => {
      producedWhenAborted = produced;
      controller.abort();
    }, 5);
    await expectNoTensorLeak(async () => {
      const cache = granite.makeCache();
      const run = async () => {
        for await (const _ of granite.generate(expectations.cases[1].prompt_ids, {
          maxNewTokens: 400,
          eosTokenIds: [],
          cache,
          signal: controller.signal,
        }))
          produced++;
      };
      await expect(run()).rejects.toThrow(/abort/i);
      // The cache still holds what was fed: the prompt and every token but the last.
      expect(cache.seqLength).toBe(expectations.cases[1].prompt_ids.length + produced - 1);
      cache.dispose();
    }, 'aborted generation');
    clearTimeout(timer);
    expect(producedWhenAborted).not.toBeNull();
    expect(produced).toBe(producedWhenAborted);
  });

  it('lets timers run between tokens where there is no setImmediate (browsers)', async () => {
    const setImmediateOfNode = globalThis.setImmediate;
    let producedWhenFired: number | null = null;
    let produced = 0;
    // @ts-expect-error -- removed for this test only, as in a browser
    delete globalThis.setImmediate;
    try {
      setTimeout(() => (producedWhenFired = produced), 0);
      for await (const _ of granite.generate(expectations.cases[1].prompt_ids, { maxNewTokens: 40, eosTokenIds: [] })) produced++;
    } finally {
      globalThis.setImmediate = setImmediateOfNode;
    }
    expect(produced).toBe(40);
    expect(producedWhenFired!).toBeLessThan(40);
  });

  it('leaks no tensor across text generation', async () => {
    await expectNoTensorLeak(async () => {
      await collect(granite.streamText(expectations.cases[2].prompt_ids, { maxNewTokens: 5, stopStrings: ['zz'] }));
      await granite.complete('Hello', { maxNewTokens: 3, chat: true, system: 'Be brief.' });
    });
    expect(tf.memory().numTensors).toBeGreaterThan(0);
  });
});
