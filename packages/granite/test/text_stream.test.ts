import { GraniteTokenizer } from '../src/tokenizer/tokenizer';
import { TextStream, streamText } from '../src/generation/text_stream';
import { TOKENIZER_DIR } from './helpers/golden';

let tok: GraniteTokenizer;
beforeAll(async () => {
  tok = await GraniteTokenizer.fromFolder(TOKENIZER_DIR);
});

const TEXTS = [
  'Emoji: 😀👍🏽 👨‍👩‍👧 🇺🇸 done',
  '中文分词测试，你好世界！',
  '日本語のテキストです。',
  '<|start_of_role|>assistant<|end_of_role|>Réponse: 東京 🙂<|end_of_text|>',
  'x² + y² = z², ½ ①',
];

function streamAll(ids: number[], skipSpecialTokens: boolean): string[] {
  const stream = new TextStream(tok, { skipSpecialTokens });
  const deltas = ids.map((id) => stream.push(id));
  deltas.push(stream.flush());
  return deltas;
}

describe('TextStream', () => {
  it.each(TEXTS)('streams %s without splitting characters', (text) => {
    const ids = tok.encode(text);
    for (const skipSpecialTokens of [false, true]) {
      const deltas = streamAll(ids, skipSpecialTokens);
      expect(deltas.join('')).toBe(tok.decode(ids, { skipSpecialTokens }));
      for (const d of deltas) expect(d).not.toContain('\uFFFD');
    }
  });

  it('holds text back while a character is incomplete (the test tokenizer splits 😀 into several tokens)', () => {
    const ids = tok.encode('😀');
    expect(ids.length).toBeGreaterThan(1);
    const deltas = streamAll(ids, true);
    expect(deltas.slice(0, -2).every((d) => d === '')).toBe(true);
    expect(deltas[ids.length - 1]).toBe('😀');
  });

  it('flushes an incomplete tail as U+FFFD, like the full decode', () => {
    const ids = [162, 245, 98, 162, 250]; // 日 + two bytes of 本
    const deltas = streamAll(ids, false);
    expect(deltas.join('')).toBe('日\uFFFD');
    expect(deltas[deltas.length - 1]).toBe('\uFFFD');
  });

  it('does not hold back forever after an invalid byte in the middle', () => {
    const ids = [222, ...tok.encode('abc')]; // a lone continuation byte, then text
    const stream = new TextStream(tok);
    const out = ids.map((id) => stream.push(id)).join('') + stream.flush();
    expect(out).toBe(tok.decode(ids));
    expect(stream.tokenIds).toEqual(ids);
  });

  it('streamText maps an async id stream to non-empty deltas', async () => {
    const text = TEXTS[0];
    async function* ids() {
      for (const id of tok.encode(text)) yield id;
    }
    const deltas: string[] = [];
    for await (const d of streamText(ids(), tok)) deltas.push(d);
    expect(deltas.join('')).toBe(text);
    expect(deltas.every((d) => d.length > 0 && !d.includes('\uFFFD'))).toBe(true);
  });
});
