import { byteLevelBpeFiles, END_OF_TEXT, GraniteTokenizer } from '../src';

describe('byteLevelBpeFiles', () => {
  const load = (merges?: [string, string][]) => {
    const files = byteLevelBpeFiles(merges);
    return GraniteTokenizer.fromJSON(files['tokenizer.json'], files['tokenizer_config.json']);
  };

  it('without merges: one token per byte, any text round-trips, end-of-text after the bytes', () => {
    const tok = load();
    const text = 'In the beginning — “Ἐν ἀρχῇ” 🌍\n\tend';
    const ids = tok.encode(text);
    expect(ids).toEqual([...Buffer.from(text, 'utf8')]);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.vocabSize).toBe(257);
    expect(tok.eosTokenId).toBe(256);
    expect(tok.encode(`a${END_OF_TEXT}b`)).toEqual([97, 256, 98]);
  });

  it('merges become tokens in order, after the bytes', () => {
    const tok = load([
      ['t', 'h'],
      ['th', 'e'],
    ]); // byte-level alphabet: plain letters are themselves
    expect(tok.encode('the')).toEqual([257]);
    expect(tok.encode('th')).toEqual([256]);
    expect(tok.decode(tok.encode('then the'))).toBe('then the');
    expect(tok.vocabSize).toBe(259);
    expect(() => byteLevelBpeFiles([['th', 'x']])).toThrow(/merge "th x" uses a token not made before it/);
  });
});
