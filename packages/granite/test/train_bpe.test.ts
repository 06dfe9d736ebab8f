import { byteLevelBpeFiles, GraniteTokenizer, trainByteLevelBpe } from '../src';

describe('trainByteLevelBpe', () => {
  it('merges the most frequent pair first (ties: the earlier-made symbols), within GPT-2 pieces', () => {
    expect(trainByteLevelBpe('the the the cat', { vocabSize: 259 })).toEqual([
      ['h', 'e'],
      ['t', 'he'],
    ]);
    // A piece boundary is never crossed: "a" and "!" are in different pieces of "a!a!".
    expect(trainByteLevelBpe('a!a!a!', { vocabSize: 300 }).some(([x, y]) => x.endsWith('a') && y.startsWith('!'))).toBe(false);
  });

  it('gives a tokenizer that round-trips its corpus in far fewer tokens than bytes, the same every time', () => {
    const corpus = Array.from(
      { length: 30 },
      (_, i) => `And God said, Let there be light: and there was light ${i}. And the evening and the morning were the day.`,
    ).join('\n');
    const merges = trainByteLevelBpe(corpus, { vocabSize: 400 });
    expect(merges.length).toBeGreaterThan(40);
    expect(merges.length).toBeLessThanOrEqual(400 - 257);
    expect(trainByteLevelBpe(corpus, { vocabSize: 400 })).toEqual(merges);
    const files = byteLevelBpeFiles(merges);
    const tok = GraniteTokenizer.fromJSON(files['tokenizer.json'], files['tokenizer_config.json']);
    const ids = tok.encode(corpus);
    expect(ids.length).toBeLessThan(Buffer.byteLength(corpus) / 3);
    expect(tok.decode(ids)).toBe(corpus);
    expect(tok.decode(tok.encode('Unseen wörds, too.'))).toBe('Unseen wörds, too.');
    expect(tok.vocabSize).toBe(257 + merges.length);
  });

  it('stops early when no pair is frequent enough, and checks vocabSize', () => {
    expect(trainByteLevelBpe('abcdef', { vocabSize: 1000 })).toEqual([]);
    expect(() => trainByteLevelBpe('x', { vocabSize: 100 })).toThrow(/vocabSize must be a whole number in \[257, 65536\], got 100/);
  });
});
