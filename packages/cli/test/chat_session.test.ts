// ChatSession on the golden chat_tiny model: what a cancelled turn leaves in the conversation and the state.
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fromPretrained, type GenerateOptions, type GraniteModel, type HybridCache } from '@graniteflow/granite';
import { ChatSession } from '../src/chat_session';
import { GOLDEN } from './helpers/cli';

/** One call of `generate`: what it was fed, what it yielded, and the cache's length around it. */
interface GenerateCall {
  promptIds: number[];
  ids: number[];
  cache: HybridCache;
  before: number;
  after: number;
}

/** The model, with every call of `generate` recorded into `calls`. */
function watched(model: GraniteModel, calls: GenerateCall[]): GraniteModel {
  const spy = Object.create(model) as GraniteModel;
  spy.generate = async function* (promptIds: readonly number[], options: GenerateOptions = {}) {
    const cache = options.cache!;
    const call: GenerateCall = { promptIds: [...promptIds], ids: [], cache, before: cache.seqLength, after: -1 };
    calls.push(call);
    try {
      for await (const id of model.generate(promptIds, options)) {
        call.ids.push(id);
        yield id;
      }
    } finally {
      call.after = cache.seqLength;
    }
  };
  return spy;
}

/** The token ids a cache holds after `calls`, worked out from what each call fed and its growth. */
function heldIds(calls: readonly GenerateCall[]): number[] {
  return calls.flatMap((c) => [...c.promptIds, ...c.ids.slice(0, c.after - c.before - c.promptIds.length)]);
}

/** Runs a turn, aborting it from a timer (as the Ctrl-C handler does) once `afterTexts` text events arrived. */
async function cancelledTurn(session: ChatSession, text: string, afterTexts: number): Promise<void> {
  const controller = new AbortController();
  let texts = 0;
  const run = async () => {
    for await (const event of session.turn(text, controller.signal)) {
      if (event.type === 'text' && ++texts === afterTexts) setTimeout(() => controller.abort(), 0);
    }
  };
  await expect(run()).rejects.toThrow(/abort/i);
}

let granite: GraniteModel;
beforeAll(async () => {
  granite = await fromPretrained(path.join(GOLDEN, 'chat_tiny'), { backend: 'wasm' });
});
afterAll(() => granite.dispose());

test('a cancelled turn keeps the reply so far; the state holds exactly the conversation, so the next turn feeds only the new text', async () => {
  const tensorsBefore = tf.memory().numTensors;
  const calls: GenerateCall[] = [];
  // Greedy replies of the random weights run for thousands of tokens: only an abort ends these.
  const session = new ChatSession(watched(granite, calls), { maxNewTokens: 3000, temperature: 0 });
  const tokenizer = granite.tokenizer!;

  await cancelledTurn(session, 'Hello', 20);
  const [first] = calls;
  expect(first.ids.length).toBeLessThan(1000);
  expect(session.messages).toEqual([
    { role: 'user', content: 'Hello' },
    { role: 'assistant', content: tokenizer.decode(first.ids, { skipSpecialTokens: false }) },
  ]);
  expect(session.lastTurn).toMatchObject({ generatedTokens: first.ids.length, contextTokens: first.after });

  await cancelledTurn(session, 'Go on', 5);
  const second = calls[1];
  // The state of the cancelled turn was kept whole and resumed...
  expect(second.cache).toBe(first.cache);
  expect(second.before).toBe(first.after);
  expect(second.promptIds.length).toBeLessThan(25);
  // ...and what the model was shown is the conversation as the chat template renders it.
  const conversation = tokenizer.applyChatTemplate(
    [
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: session.messages[1].content },
      { role: 'user', content: 'Go on' },
    ],
    { addGenerationPrompt: true },
  );
  expect(tokenizer.decode([...heldIds(calls.slice(0, 1)), ...second.promptIds], { skipSpecialTokens: false })).toBe(conversation);
  expect(session.messages).toHaveLength(4);

  session.dispose();
  expect(tf.memory().numTensors).toBe(tensorsBefore);
});

test('a turn cancelled before anything was fed leaves the conversation and the state as they were', async () => {
  const calls: GenerateCall[] = [];
  const session = new ChatSession(watched(granite, calls), { maxNewTokens: 3000, temperature: 0 });
  await cancelledTurn(session, 'Hello', 10);
  const before = session.messages.map((m) => ({ ...m }));

  const aborted = new AbortController();
  aborted.abort();
  await expect(
    (async () => {
      for await (const _ of session.turn('Never fed', aborted.signal));
    })(),
  ).rejects.toThrow(/abort/i);
  expect(session.messages).toEqual(before);
  expect(session.lastTurn).toMatchObject({ generatedTokens: 0, contextTokens: calls[0].after });

  await cancelledTurn(session, 'Go on', 3);
  const resumed = calls[2];
  expect(resumed.cache).toBe(calls[0].cache);
  expect(resumed.before).toBe(calls[0].after);
  expect(session.messages.map((m) => m.content).slice(0, 3)).toEqual(['Hello', before[1].content, 'Go on']);
  session.dispose();
});
