/**
 * Token sampling as data plus pure functions. {@link compileSampling} turns user options into a
 * {@link SamplingPlan} (a discriminated union: greedy or seeded sampling, with a list of logits
 * steps); {@link makeSampler} runs a plan: steps in order, then argmax or a seeded categorical draw.
 *
 * Steps follow Hugging Face transformers (order and semantics): repetition penalty, then
 * temperature, top-k, top-p, min-p. Only ids below `vocabLimit` are ever considered, because the
 * model's vocabulary is padded with rows that have no token.
 */
import { createPrng, randomSeed } from './prng';

/** User-facing sampling options. Greedy unless `temperature` > 0. */
export interface SamplingOptions {
  /** Softmax temperature; 0 or undefined = greedy (argmax). */
  temperature?: number;
  /** Keep the k most likely tokens (ties with the k-th kept, as in HF); 0/undefined = off. */
  topK?: number;
  /** Nucleus sampling: keep the most likely tokens whose mass reaches p (at least one); 1/undefined = off. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top probability; 0/undefined = off. */
  minP?: number;
  /** HF repetition penalty for ids already in the history (prompt + generated); 1/undefined = off. */
  repetitionPenalty?: number;
  /** Seed of the random stream; same seed, same tokens. Random when omitted. */
  seed?: number;
}

/** One pure transformation of the logits. */
export type LogitsStep =
  | { kind: 'repetitionPenalty'; penalty: number }
  | { kind: 'temperature'; temperature: number }
  | { kind: 'topK'; k: number }
  | { kind: 'topP'; p: number }
  | { kind: 'minP'; p: number };

/** How the next token is chosen. */
export type SamplingPlan = { kind: 'greedy'; steps: LogitsStep[] } | { kind: 'sample'; steps: LogitsStep[]; seed: number };

/** A compiled sampler; keeps its random stream between calls. */
export interface Sampler {
  readonly plan: SamplingPlan;
  /**
   * Picks the next id from `logits` (one row, length ≥ vocabLimit is fine: ids ≥ vocabLimit are
   * ignored). `history` is every id the model has seen so far (for the repetition penalty).
   * The input array is not modified.
   */
  sample(logits: Float32Array, history: readonly number[]): number;
}

/** An invalid sampling option. */
export class SamplingOptionsError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'SamplingOptionsError';
  }
}

function check(ok: boolean, field: string, expected: string, value: unknown): void {
  if (!ok) throw new SamplingOptionsError(`Sampling option ${field} must be ${expected}, got ${String(value)}`);
}

/**
 * Validates options and builds the plan. Steps that would do nothing (topK 0, topP 1, minP 0,
 * penalty 1) are left out.
 *
 * @example
 * compileSampling({ temperature: 0.7, topP: 0.9, seed: 1 })
 * // { kind: 'sample', seed: 1, steps: [{ kind: 'temperature', temperature: 0.7 }, { kind: 'topP', p: 0.9 }] }
 */
export function compileSampling(options: SamplingOptions = {}): SamplingPlan {
  const { temperature, topK, topP, minP, repetitionPenalty, seed } = options;
  if (temperature !== undefined) check(Number.isFinite(temperature) && temperature >= 0, 'temperature', 'a finite number ≥ 0', temperature);
  if (topK !== undefined) check(Number.isInteger(topK) && topK >= 0, 'topK', 'an integer ≥ 0', topK);
  if (topP !== undefined) check(topP > 0 && topP <= 1, 'topP', 'in (0, 1]', topP);
  if (minP !== undefined) check(minP >= 0 && minP <= 1, 'minP', 'in [0, 1]', minP);
  if (repetitionPenalty !== undefined) {
    check(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0, 'repetitionPenalty', 'a finite number > 0', repetitionPenalty);
  }
  if (seed !== undefined) check(Number.isSafeInteger(seed), 'seed', 'a safe integer', seed);

  const steps: LogitsStep[] = [];
  if (repetitionPenalty !== undefined && repetitionPenalty !== 1) steps.push({ kind: 'repetitionPenalty', penalty: repetitionPenalty });
  if (!temperature) return { kind: 'greedy', steps };
  if (temperature !== 1) steps.push({ kind: 'temperature', temperature });
  if (topK) steps.push({ kind: 'topK', k: topK });
  if (topP !== undefined && topP < 1) steps.push({ kind: 'topP', p: topP });
  if (minP) steps.push({ kind: 'minP', p: minP });
  return { kind: 'sample', steps, seed: seed ?? randomSeed() };
}

/** HF repetition penalty: logits of ids in `history` are divided by `penalty` when positive, multiplied when negative. */
export function applyRepetitionPenalty(logits: Float32Array, history: readonly number[], penalty: number): Float32Array {
  const out = logits.slice();
  for (const id of new Set(history)) {
    if (id < 0 || id >= out.length) continue;
    const v = logits[id];
    out[id] = v > 0 ? v / penalty : v * penalty;
  }
  return out;
}

/** Divides every logit by `temperature`. */
export function applyTemperature(logits: Float32Array, temperature: number): Float32Array {
  return logits.map((v) => v / temperature);
}

/** Keeps the `k` largest logits (and any equal to the k-th), the rest become −∞. */
export function topKFilter(logits: Float32Array, k: number): Float32Array {
  if (k >= logits.length) return logits.slice();
  const kth = Float32Array.from(logits).sort().reverse()[k - 1];
  return logits.map((v) => (v >= kth ? v : -Infinity));
}

/** Softmax in float64; −∞ logits get probability 0. */
export function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = new Float64Array(logits.length);
  if (max === -Infinity) return out;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/**
 * Nucleus filter, as HF's TopPLogitsWarper: sorting ascending, tokens whose cumulative
 * probability is ≤ 1 − p are removed; the most likely token always stays.
 */
export function topPFilter(logits: Float32Array, p: number): Float32Array {
  const probs = softmax(logits);
  const order = Array.from(logits.keys()).filter((i) => probs[i] > 0);
  order.sort((a, b) => logits[a] - logits[b] || b - a);
  const out = logits.slice();
  let cumulative = 0;
  for (let r = 0; r < order.length - 1; r++) {
    cumulative += probs[order[r]];
    if (cumulative <= 1 - p) out[order[r]] = -Infinity;
  }
  for (let i = 0; i < out.length; i++) if (probs[i] === 0) out[i] = -Infinity;
  return out;
}

/** HF MinPLogitsWarper: removes tokens whose probability is below `p` × the top probability. */
export function minPFilter(logits: Float32Array, p: number): Float32Array {
  const probs = softmax(logits);
  let top = 0;
  for (const q of probs) if (q > top) top = q;
  const threshold = p * top;
  return logits.map((v, i) => (probs[i] < threshold ? -Infinity : v));
}

/** Index of the largest logit, the lowest index on ties; NaN never wins. */
export function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > bestValue) {
      bestValue = logits[i];
      best = i;
    }
  }
  if (best < 0) throw new RangeError('argmax: every logit is −∞ or NaN');
  return best;
}

/** Draws an index with probability softmax(logits)[i], using one uniform number `u` in [0, 1). */
export function sampleCategorical(logits: Float32Array, u: number): number {
  const probs = softmax(logits);
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  // Rounding can leave the total a hair below 1; the remainder belongs to the last candidate.
  if (last < 0) throw new RangeError('sampleCategorical: every logit is −∞ or NaN');
  return last;
}

/** Applies one step (a pure function of its inputs). */
export function applyStep(step: LogitsStep, logits: Float32Array, history: readonly number[]): Float32Array {
  switch (step.kind) {
    case 'repetitionPenalty':
      return applyRepetitionPenalty(logits, history, step.penalty);
    case 'temperature':
      return applyTemperature(logits, step.temperature);
    case 'topK':
      return topKFilter(logits, step.k);
    case 'topP':
      return topPFilter(logits, step.p);
    case 'minP':
      return minPFilter(logits, step.p);
  }
}

/**
 * Builds a sampler from options (or a plan from {@link compileSampling}).
 *
 * @param context.vocabLimit Ids at or above this are never chosen (padded embedding rows with no
 *   token; the tokenizer's `vocabSize`). Default: the full logits row.
 * @example
 * const sampler = makeSampler({ temperature: 0.8, topK: 40, seed: 7 }, { vocabLimit: tokenizer.vocabSize });
 * const next = sampler.sample(lastLogits, history);
 */
export function makeSampler(options: SamplingOptions | SamplingPlan = {}, context: { vocabLimit?: number } = {}): Sampler {
  const plan = 'kind' in options ? options : compileSampling(options);
  const { vocabLimit } = context;
  if (vocabLimit !== undefined) {
    check(Number.isInteger(vocabLimit) && vocabLimit > 0, 'vocabLimit', 'a positive integer', vocabLimit);
  }
  const rng = plan.kind === 'sample' ? createPrng(plan.seed) : undefined;
  return {
    plan,
    sample(logits: Float32Array, history: readonly number[]): number {
      if (!(logits instanceof Float32Array) || logits.length === 0) {
        throw new TypeError('sample(logits): expected a non-empty Float32Array');
      }
      let x = vocabLimit !== undefined && vocabLimit < logits.length ? logits.subarray(0, vocabLimit) : logits;
      for (const step of plan.steps) x = applyStep(step, x, history);
      return rng ? sampleCategorical(x, rng.nextFloat()) : argmax(x);
    },
  };
}
