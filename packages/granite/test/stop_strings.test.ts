import { GraniteTokenizer } from '../src/tokenizer/tokenizer';
import { StopStringDetector, StopStringError, findStopString } from '../src/generation/stop_strings';
import { TextStream } from '../src/generation/text_stream';
import { TOKENIZER_DIR } from './helpers/golden';

function run(stops: string[], deltas: string[]) {
  const d = new StopStringDetector(stops);
  const shown: string[] = [];
  let stop: string | null = null;
  for (const delta of deltas) {
    const step = d.push(delta);
    shown.push(step.text);
    if (step.stop) {
      stop = step.stop;
      break;
    }
  }
  if (!stop) shown.push(d.flush());
  return { text: shown.join(''), stop, shown };
}

describe('StopStringDetector', () => {
  it('finds a stop string split across deltas and reports the text before it', () => {
    expect(run(['\nUser:'], ['Hello', ' there\nU', 'se', 'r: more'])).toEqual({
      text: 'Hello there',
      stop: '\nUser:',
      shown: ['Hello', ' there', '', ''],
    });
  });

  it('withholds only what could start a stop string, and releases it when it does not', () => {
    const d = new StopStringDetector(['STOP']);
    expect(d.push('abc ST')).toEqual({ text: 'abc ', stop: null });
    expect(d.push('ART')).toEqual({ text: 'START', stop: null });
    expect(d.push('xS')).toEqual({ text: 'x', stop: null });
    expect(d.flush()).toBe('S');
  });

  it('gives the same answer for every split of the text', () => {
    const text = 'one two <<END>> three';
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j++) {
        expect(run(['<<END>>', 'never'], [text.slice(0, i), text.slice(i, j), text.slice(j)]).text).toBe('one two ');
      }
    }
  });

  it('picks the earliest stop, then the longest at the same position', () => {
    expect(findStopString('a bc b', ['b', 'bc'])).toEqual({ index: 2, stop: 'bc' });
    expect(run(['c', 'ab'], ['xa', 'bc'])).toMatchObject({ text: 'x', stop: 'ab' });
  });

  it('ignores deltas after the stop', () => {
    const d = new StopStringDetector(['!']);
    expect(d.push('hi!')).toEqual({ text: 'hi', stop: '!' });
    expect(d.push('more')).toEqual({ text: '', stop: '!' });
    expect(d.stopped).toBe('!');
  });

  it('rejects empty or non-string stop strings', () => {
    expect(() => new StopStringDetector([''])).toThrow(StopStringError);
    expect(() => new StopStringDetector(['a', 3 as unknown as string])).toThrow(/stop strings\[1\] must be a non-empty string/);
  });

  it('works on detokenised streams where the stop spans tokens and multi-byte characters', async () => {
    const tok = await GraniteTokenizer.fromFolder(TOKENIZER_DIR);
    const ids = tok.encode('Answer: 東京 is big. 🛑 trailing');
    const stream = new TextStream(tok);
    const deltas = ids.map((id) => stream.push(id));
    expect(run(['🛑'], deltas)).toMatchObject({ text: 'Answer: 東京 is big. ', stop: '🛑' });
    expect(run(['big. 🛑'], deltas)).toMatchObject({ text: 'Answer: 東京 is ', stop: 'big. 🛑' });
  });
});
