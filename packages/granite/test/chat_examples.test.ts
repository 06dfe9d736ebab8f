import * as path from 'node:path';
import { chatExample, GraniteTokenizer, IGNORE_INDEX, padExamples } from '../src';
import { GOLDEN } from './golden_fixtures';

describe('chatExample', () => {
  let tok: GraniteTokenizer;
  beforeAll(async () => {
    tok = await GraniteTokenizer.fromFolder(path.join(GOLDEN, 'chat_tiny'));
  });

  const conversation = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Name a colour.' },
    { role: 'assistant', content: 'Blue.' },
    { role: 'user', content: 'Another?' },
    { role: 'assistant', content: 'Green.' },
  ];

  it('labels only the assistant turns (their text and end of turn), shifted to the position before', () => {
    const ex = chatExample(tok, conversation);
    expect(ex.ids).toEqual(tok.encodeChat(conversation));
    expect(ex.labels).toHaveLength(ex.ids.length);
    const learned = ex.labels.filter((l) => l !== IGNORE_INDEX);
    const text = tok.decode(learned);
    expect(text).toContain('Blue.');
    expect(text).toContain('Green.');
    expect(text).not.toMatch(/terse|colour|Another/);
    // Each learned label is the next input token.
    ex.labels.forEach((l, t) => {
      if (l !== IGNORE_INDEX) expect(l).toBe(ex.ids[t + 1]);
    });
    // The first assistant turn starts right after the prompt rendered with its generation header.
    const prompt = tok.encodeChat(conversation.slice(0, 2), { addGenerationPrompt: true });
    expect(ex.labels[prompt.length - 2]).toBe(IGNORE_INDEX);
    expect(ex.labels[prompt.length - 1]).toBe(ex.ids[prompt.length]);
  });

  it('cuts to maxLength, pads rows on the right with ignored labels, refuses a conversation without an answer', () => {
    const ex = chatExample(tok, conversation, 10);
    expect(ex.ids).toHaveLength(10);
    const short = chatExample(tok, conversation.slice(0, 3));
    const batch = padExamples([ex, short], 0);
    const width = Math.max(10, short.ids.length);
    expect(batch.inputs.map((r) => r.length)).toEqual([width, width]);
    expect(batch.labels[0].slice(10).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(() => chatExample(tok, conversation.slice(0, 2))).toThrow(/no assistant message/);
  });
});
