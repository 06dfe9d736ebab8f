import { leftPad } from '../src/generation/left_pad';

describe('leftPad', () => {
  it('pads shorter prompts on the left and masks the padding', () => {
    const { ids, mask, width, padded } = leftPad([[5, 6, 7], [8]], 0);
    expect(width).toBe(3);
    expect(ids).toEqual([5, 6, 7, 0, 0, 8]);
    expect(mask).toEqual([1, 1, 1, 0, 0, 1]);
    expect(padded).toBe(true);
  });

  it('takes a prompt of 300K tokens (longer than a call can spread its arguments)', () => {
    const long = Array.from({ length: 300_000 }, (_, i) => i % 1000);
    const { ids, mask, width, padded } = leftPad([long], 0);
    expect(width).toBe(300_000);
    expect(ids.length).toBe(300_000);
    expect(ids[299_999]).toBe(999);
    expect(mask.every((m) => m === 1)).toBe(true);
    expect(padded).toBe(false);
  });
});
