// Small pieces: progress bar, option parsing, the prefix cache, the queue, error messages, the embedded model's files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from '@graniteflow/core';
import { GraniteTokenizer, parameterShapes, readModelConfig } from '@graniteflow/granite';
import { EMBEDDED_MODEL_NAME, embeddedModelPath } from '../src/model_source';
import { MODEL_OPTIONS, numberOption, parseCommandArgs, parseIdList } from '../src/args';
import { describeError, UsageError } from '../src/errors';
import { ProgressBar } from '../src/progress';
import { PrefixCache } from '../src/server/prefix_cache';
import { GenerationQueue, QueueFullError } from '../src/server/queue';
import { StubCache } from './helpers/stub_engine';

function sink(isTTY: boolean) {
  const out = { text: '', isTTY, columns: 100, write: (t: string) => (out.text += t) };
  return out;
}

describe('ProgressBar', () => {
  test('on a terminal it redraws one line in place and ends it', () => {
    const s = sink(true);
    const bar = new ProgressBar(s, 'Loading m', { intervalMs: 0 });
    bar.update(512, 2048, 'a.weight');
    bar.update(2048, 2048, 'b.weight');
    bar.done();
    const frames = s.text.split('\r').filter((f) => f !== '');
    expect(frames[0]).toMatch(/^Loading m \[#+-+\] {2}25% 512 B\/2\.0 KiB a\.weight\x1b\[K$/);
    expect(frames[1]).toMatch(/100% 2\.0 KiB\/2\.0 KiB/);
    expect(frames[2]).toMatch(/^Loading m: 2\.0 KiB in \d+\.\d s( \([\d.]+ [KMGT]?i?B\/s\))?\x1b\[K\n$/); // average speed unless no time passed
    expect(s.text.split('\n')).toHaveLength(2); // one line
  });

  test('elsewhere it writes one line at the start and one at the end', () => {
    const s = sink(false);
    const bar = new ProgressBar(s, 'Downloading x');
    for (let i = 0; i <= 100; i++) bar.update(i * 1024, 100 * 1024);
    bar.done();
    expect(s.text.split('\n').filter(Boolean)).toEqual([
      'Downloading x (100.0 KiB)…',
      expect.stringMatching(/^Downloading x: 100\.0 KiB in/),
    ]);
    expect(s.text).not.toContain('\r');
  });

  test('silent draws nothing; an unknown total shows the amount', () => {
    const quiet = sink(true);
    const bar = new ProgressBar(quiet, 'x', { silent: true });
    bar.update(1, 2);
    bar.done();
    expect(quiet.text).toBe('');
    const s = sink(true);
    const unknown = new ProgressBar(s, 'y', { intervalMs: 0 });
    unknown.update(3 * 1024 * 1024, 0);
    expect(s.text).toMatch(/y \[-+\] 3\.0 MiB/);
  });
});

describe('arguments', () => {
  const table = { n: { type: 'string' as const, description: '' }, flag: { type: 'boolean' as const, short: 'f', description: '' } };

  test('numbers are checked against their range; mistakes are usage errors', () => {
    const { values, positionals } = parseCommandArgs('cmd', ['--n', '3', '-f', 'rest'], table);
    expect(values).toMatchObject({ n: '3', flag: true });
    expect(positionals).toEqual(['rest']);
    expect(numberOption('cmd', values, 'n', { min: 1, integer: true })).toBe(3);
    expect(() => numberOption('cmd', { n: '2.5' }, 'n', { integer: true })).toThrow(/--n must be an integer, got "2.5"/);
    expect(() => numberOption('cmd', { n: '' }, 'n')).toThrow(UsageError);
    expect(() => numberOption('cmd', { n: '9' }, 'n', { max: 5 })).toThrow(/≤ 5/);
    expect(() => parseCommandArgs('cmd', ['--what'], table)).toThrow(UsageError);
    expect(() => parseCommandArgs('cmd', ['--n'], table)).toThrow(UsageError);
  });

  test('--backend help names native as the default when it loads, then wasm, cpu and tensorflow', () => {
    const help = MODEL_OPTIONS.backend.description;
    expect(help).toMatch(/^backend: native \(the default when @graniteflow\/native loads\b/);
    expect(help).toMatch(/wasm \(the default otherwise\), cpu or tensorflow/);
  });

  test('--quiet and --verbose together are a usage error, not one silently winning', () => {
    const table = {
      quiet: { type: 'boolean' as const, short: 'q', description: '' },
      verbose: { type: 'boolean' as const, short: 'v', description: '' },
    };
    expect(() => parseCommandArgs('generate', ['-q', '-v'], table)).toThrow(/Give --quiet \(-q\) or --verbose \(-v\), not both/);
    expect(parseCommandArgs('generate', ['-v'], table).values.verbose).toBe(true);
  });

  test('token id lists', () => {
    expect(parseIdList('c', 'ids', '1, 2,3 4')).toEqual([1, 2, 3, 4]);
    expect(() => parseIdList('c', 'ids', '1,-2')).toThrow(UsageError);
    expect(() => parseIdList('c', 'ids', ' , ')).toThrow(/at least one/);
  });
});

describe('PrefixCache', () => {
  afterEach(() => expect(StubCache.live).toBe(0));

  test('finds the longest saved prefix, by ids or by text; evicts least recently used; disposes what it drops', () => {
    const cache = new PrefixCache({ maxEntries: 2 });
    cache.add({ ids: [1, 2], text: 'ab', cache: new StubCache(2) });
    cache.add({ ids: [1, 2, 3, 4], text: 'abcd', cache: new StubCache(4) });
    expect(cache.find([1, 2, 3, 4, 5], 'abcde')).toMatchObject({ entry: { ids: [1, 2, 3, 4] }, rest: { ids: [5] } });
    expect(cache.find([1, 2, 9], 'abz')).toMatchObject({ entry: { ids: [1, 2] }, rest: { ids: [9] } });
    // Same text, other ids (a reply re-tokenized differently): the text match resumes it.
    expect(cache.find([1, 23, 4, 7], 'abcdx')).toMatchObject({ entry: { ids: [1, 2, 3, 4] }, rest: { text: 'x' } });
    // A state is never resumed for the whole prompt (something new must be fed).
    expect(cache.find([1, 2], 'ab')).toBeNull();
    // [1, 2, 3, 4] was used last, so [1, 2] is evicted.
    cache.add({ ids: [7], text: 'g', cache: new StubCache(1) });
    expect(cache.size).toBe(2);
    expect(cache.find([1, 2, 9], 'abz')).toBeNull();
    // Saving the same ids again replaces the older state.
    cache.add({ ids: [7], text: 'g', cache: new StubCache(1) });
    expect(cache.size).toBe(2);
    cache.clear();
  });

  test('a byte bound; 0 entries disables it', () => {
    const bounded = new PrefixCache({ maxBytes: 100 });
    bounded.add({ ids: [1], text: 'a', cache: new StubCache(3) }); // 64 bytes
    bounded.add({ ids: [2], text: 'b', cache: new StubCache(3) });
    expect(bounded.size).toBe(1);
    bounded.add({ ids: [3], text: 'c', cache: new StubCache(100) }); // larger than the bound
    expect(bounded.size).toBe(1);
    bounded.clear();
    const off = new PrefixCache({ maxEntries: 0 });
    off.add({ ids: [1], text: 'a', cache: new StubCache(1) });
    expect(off.size).toBe(0);
  });
});

describe('GenerationQueue', () => {
  test('one at a time in order; full → QueueFullError; a waiter that aborts leaves', async () => {
    const queue = new GenerationQueue(2);
    const order: string[] = [];
    const a = queue.enter();
    const b = queue.enter();
    const controller = new AbortController();
    const c = queue.enter(controller.signal);
    expect(() => queue.enter()).toThrow(QueueFullError);
    expect(queue.waitingCount).toBe(2);
    controller.abort(new Error('gone'));
    await expect(c.ready).rejects.toThrow('gone');
    expect(queue.waitingCount).toBe(1);
    await a.ready;
    order.push('a');
    const bDone = b.ready.then(() => order.push('b'));
    await Promise.resolve();
    expect(order).toEqual(['a']); // b waits for a
    a.release();
    await bDone;
    b.release();
    c.release(); // a no-op: it never ran
    expect(queue.active).toBe(false);
    expect(order).toEqual(['a', 'b']);
  });
});

test('describeError adds advice by error kind and keeps one paragraph', () => {
  const err = new Error('x.safetensors: bad header\n  details');
  err.name = 'SafetensorsError';
  expect(describeError(err)).toBe(
    'x.safetensors: bad header details. The model files look corrupt or incomplete: download them again (graniteflow download <org/name>) or re-copy the folder.',
  );
  expect(describeError('plain')).toBe('plain');
});

describe('the embedded model folder', () => {
  // Its weights and README are replaced when the demo model is retrained (recipes/kjv-demo), so
  // these tests check that the folder is a complete, consistent model, never what it generates.
  const folder = embeddedModelPath();

  test('holds every file a model folder needs, under the name the CLI announces', () => {
    expect(path.basename(folder)).toBe(EMBEDDED_MODEL_NAME);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'model.safetensors', 'README.md']) {
      expect([f, fs.statSync(path.join(folder, f), { throwIfNoEntry: false })?.isFile()]).toEqual([f, true]);
    }
    expect(JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8')).model_type).toBe('granitemoehybrid');
    // The README's wording changes with each training run; its title names the model.
    expect(fs.readFileSync(path.join(folder, 'README.md'), 'utf8').split('\n')[0]).toContain('tiny-kjv-granite-4.0-h');
  });

  test('its checkpoint holds every weight its config asks for, in the shape it asks for', () => {
    const { config } = readModelConfig(folder);
    const checkpoint = Checkpoint.open(folder);
    try {
      const expected = parameterShapes(config);
      expect(checkpoint.names().sort()).toEqual(expected.map(([name]) => name).sort());
      for (const [name, shape] of expected) expect([name, checkpoint.info(name).shape]).toEqual([name, shape]);
    } finally {
      checkpoint.close();
    }
  });

  test("its tokenizer fits the vocabulary, ends on the config's eos and renders a chat with the plain template", async () => {
    const { config } = readModelConfig(folder);
    const tokenizer = await GraniteTokenizer.fromFolder(folder);
    expect([config.eos_token_id].flat()).toContain(tokenizer.eosTokenId); // generation stops on the token training ended each text with
    expect(tokenizer.decode([tokenizer.eosTokenId!], { skipSpecialTokens: false })).toBe('<|end_of_text|>');
    const ids = tokenizer.encode('And God said, Let there be light: and there was light.');
    expect(Math.max(...ids)).toBeLessThan(config.vocab_size);
    const prompt = tokenizer.applyChatTemplate([{ role: 'user', content: 'Who made the heaven?' }], { addGenerationPrompt: true });
    expect(prompt).toContain('Who made the heaven?');
    expect(prompt).not.toContain('<|start_of_role|>'); // "Role: text" turns, no Granite role tokens
  });
});

describe('GenerationQueue with parallel places and a state budget', () => {
  test('runs up to `parallel` at once while their bytes fit, first come first served', async () => {
    const queue = new GenerationQueue(4, { parallel: 3, budgetBytes: 250 });
    const a = queue.enter(undefined, 100);
    const b = queue.enter(undefined, 100);
    // 300 bytes would pass the budget: c waits although a place is free, and d waits behind it.
    const c = queue.enter(undefined, 100);
    const d = queue.enter(undefined, 10);
    const started: string[] = [];
    void c.ready.then(() => started.push('c'));
    void d.ready.then(() => started.push('d'));
    await Promise.resolve();
    expect([queue.running, queue.bytesInUse, queue.waitingCount, started]).toEqual([2, 200, 2, []]);
    a.release();
    await new Promise((r) => setImmediate(r));
    expect([queue.running, queue.bytesInUse, started]).toEqual([3, 210, ['c', 'd']]);
    for (const t of [b, c, d]) t.release();
    expect([queue.running, queue.bytesInUse]).toEqual([0, 0]);
    // One alone always runs, even past the budget (the server refuses such requests before).
    const big = queue.enter(undefined, 1000);
    await big.ready;
    expect(queue.running).toBe(1);
    big.release();
  });
});
