import { createPrng } from '../src/generation/prng';
import {
  SamplingOptionsError,
  applyRepetitionPenalty,
  applyTemperature,
  argmax,
  compileSampling,
  makeSampler,
  minPFilter,
  sampleCategorical,
  topKFilter,
  topPFilter,
} from '../src/generation/sampling';

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const logOf = (probs: number[]): Float32Array => f32(probs.map(Math.log));
const kept = (x: Float32Array): number[] => Array.from(x.keys()).filter((i) => x[i] !== -Infinity);
const NEG = -Infinity;

describe('logits steps (hand-computed)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen ids, once each', () => {
    const input = f32([2, -1, 0.5, 3]);
    expect(Array.from(applyRepetitionPenalty(input, [0, 1, 1], 2))).toEqual([1, -2, 0.5, 3]);
    expect(Array.from(input)).toEqual([2, -1, 0.5, 3]); // pure
  });

  it('temperature divides every logit', () => {
    expect(Array.from(applyTemperature(f32([1, 2, -3]), 0.5))).toEqual([2, 4, -6]);
  });

  it('top-k keeps the k largest, and ties with the k-th', () => {
    expect(Array.from(topKFilter(f32([1, 3, 2, 0]), 2))).toEqual([NEG, 3, 2, NEG]);
    expect(Array.from(topKFilter(f32([1, 3, 2, 3]), 1))).toEqual([NEG, 3, NEG, 3]);
    expect(Array.from(topKFilter(f32([1, 2]), 5))).toEqual([1, 2]);
  });

  it('top-p keeps the smallest head whose mass reaches p (HF rule), and always the top token', () => {
    const logits = logOf([0.5, 0.3, 0.15, 0.05]);
    expect(kept(topPFilter(logits, 0.75))).toEqual([0, 1]); // 0.05 + 0.15 = 0.2 ≤ 0.25 removed
    expect(kept(topPFilter(logits, 0.9))).toEqual([0, 1, 2]); // only 0.05 ≤ 0.1 removed
    expect(kept(topPFilter(logits, 0.01))).toEqual([0]);
    expect(kept(topPFilter(logits, 1))).toEqual([0, 1, 2, 3]);
  });

  it('min-p removes tokens below p × the top probability', () => {
    const logits = logOf([0.5, 0.3, 0.15, 0.05]);
    expect(kept(minPFilter(logits, 0.2))).toEqual([0, 1, 2]); // threshold 0.1
    expect(kept(minPFilter(logits, 0.7))).toEqual([0]); // threshold 0.35
  });

  it('argmax takes the lowest index on ties and ignores NaN', () => {
    expect(argmax(f32([1, 5, 5, 2]))).toBe(1);
    expect(argmax(f32([NaN, 1, NaN]))).toBe(1);
    expect(() => argmax(f32([NEG, NaN]))).toThrow(/every logit/);
  });

  it('categorical draw walks the cumulative distribution', () => {
    const logits = logOf([0.5, 0.3, 0.2]);
    expect(sampleCategorical(logits, 0)).toBe(0);
    expect(sampleCategorical(logits, 0.49)).toBe(0);
    expect(sampleCategorical(logits, 0.51)).toBe(1);
    expect(sampleCategorical(logits, 0.81)).toBe(2);
    expect(sampleCategorical(f32([NEG, 0, NEG]), 0.999999)).toBe(1);
  });
});

describe('compileSampling', () => {
  it('is greedy when temperature is 0 or undefined, keeping only the repetition penalty', () => {
    expect(compileSampling({})).toEqual({ kind: 'greedy', steps: [] });
    expect(compileSampling({ temperature: 0, topK: 5, repetitionPenalty: 1.2 })).toEqual({
      kind: 'greedy',
      steps: [{ kind: 'repetitionPenalty', penalty: 1.2 }],
    });
  });

  it('orders steps as transformers does and drops no-op steps', () => {
    expect(compileSampling({ temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1, seed: 3 })).toEqual({
      kind: 'sample',
      seed: 3,
      steps: [
        { kind: 'repetitionPenalty', penalty: 1.1 },
        { kind: 'temperature', temperature: 0.7 },
        { kind: 'topK', k: 40 },
        { kind: 'topP', p: 0.9 },
        { kind: 'minP', p: 0.05 },
      ],
    });
    expect(compileSampling({ temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 1 }).steps).toEqual([]);
  });

  it('rejects invalid options, naming the option', () => {
    expect(() => compileSampling({ temperature: -1 })).toThrow(SamplingOptionsError);
    expect(() => compileSampling({ temperature: -1 })).toThrow(/temperature must be a finite number ≥ 0, got -1/);
    expect(() => compileSampling({ topK: 1.5 })).toThrow(/topK/);
    expect(() => compileSampling({ topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => compileSampling({ minP: 2 })).toThrow(/minP/);
    expect(() => compileSampling({ repetitionPenalty: 0 })).toThrow(/repetitionPenalty/);
    expect(() => compileSampling({ seed: 0.5 })).toThrow(/seed/);
    expect(() => makeSampler({}, { vocabLimit: 0 })).toThrow(/vocabLimit/);
  });
});

describe('makeSampler', () => {
  it('greedy picks the argmax after the repetition penalty', () => {
    const s = makeSampler({ repetitionPenalty: 3 });
    expect(s.sample(f32([3, 2, 0]), [])).toBe(0);
    expect(s.sample(f32([3, 2, 0]), [0])).toBe(1); // 3 / 3 = 1 < 2
  });

  it('never chooses ids ≥ vocabLimit, greedy or sampled', () => {
    const logits = f32([0, 0, 1, 100, 100]);
    expect(makeSampler({}, { vocabLimit: 3 }).sample(logits, [])).toBe(2);
    const s = makeSampler({ temperature: 5, seed: 1 }, { vocabLimit: 3 });
    for (let i = 0; i < 500; i++) expect(s.sample(logits, [])).toBeLessThan(3);
  });

  it('same seed, same sequence; another seed, another sequence', () => {
    const logits = f32([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
    const run = (seed: number) => {
      const s = makeSampler({ temperature: 1, seed });
      return Array.from({ length: 64 }, () => s.sample(logits, []));
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it('draw frequencies match the probabilities (fixed seed, 20000 draws)', () => {
    const probs = [0.5, 0.3, 0.15, 0.05];
    const count = (options: Parameters<typeof makeSampler>[0]) => {
      const s = makeSampler(options);
      const counts = [0, 0, 0, 0];
      for (let i = 0; i < 20000; i++) counts[s.sample(logOf(probs), [])]++;
      return counts.map((c) => c / 20000);
    };
    // Standard error ≤ 0.0036 per frequency; 0.015 is > 4 of them.
    count({ temperature: 1, seed: 123 }).forEach((f, i) => expect(Math.abs(f - probs[i])).toBeLessThan(0.015));
    // top-k 2 renormalises the head: 0.5 / 0.8, 0.3 / 0.8.
    const k2 = count({ temperature: 1, topK: 2, seed: 7 });
    expect(Math.abs(k2[0] - 0.625)).toBeLessThan(0.015);
    expect(Math.abs(k2[1] - 0.375)).toBeLessThan(0.015);
    expect(k2[2] + k2[3]).toBe(0);
    // temperature 2 flattens: p ∝ sqrt(p).
    const sq = probs.map(Math.sqrt);
    const z = sq.reduce((a, b) => a + b, 0);
    count({ temperature: 2, seed: 99 }).forEach((f, i) => expect(Math.abs(f - sq[i] / z)).toBeLessThan(0.015));
  });

  it('does not modify the caller’s logits', () => {
    const logits = f32([1, 2, 3]);
    makeSampler({ temperature: 0.5, topK: 1, repetitionPenalty: 2, seed: 1 }).sample(logits, [2]);
    expect(Array.from(logits)).toEqual([1, 2, 3]);
  });
});

describe('createPrng', () => {
  it('is deterministic, uniform on [0, 1), and seed-sensitive', () => {
    const a = createPrng(5);
    const b = createPrng(5);
    const xs = Array.from({ length: 10000 }, () => a.nextFloat());
    expect(Array.from({ length: 10000 }, () => b.nextFloat())).toEqual(xs);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(Math.abs(xs.reduce((s, x) => s + x, 0) / xs.length - 0.5)).toBeLessThan(0.01);
    expect(createPrng(6).nextFloat()).not.toBe(createPrng(5).nextFloat());
    expect(createPrng(2 ** 40).nextFloat()).not.toBe(createPrng(0).nextFloat());
    expect(() => createPrng(1.5)).toThrow(/safe integer/);
  });
});
