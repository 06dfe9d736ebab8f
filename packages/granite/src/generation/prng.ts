/**
 * A small seeded pseudo-random generator for reproducible sampling: the same seed gives the same
 * sequence on every platform (only 32-bit integer arithmetic). Not for cryptography.
 *
 * The seed is mixed with splitmix32 first, so nearby seeds (0, 1, 2, …) give unrelated streams;
 * the stream itself is mulberry32 (period 2^32, passes gjrand/PractRand for the draws a
 * generation needs).
 */

/** A stream of pseudo-random numbers. */
export interface Prng {
  /** Next float, uniform in [0, 1), with 32 random bits. */
  nextFloat(): number;
  /** Next unsigned 32-bit integer. */
  nextUint32(): number;
}

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Creates a generator from an integer seed (any safe integer; the high bits are folded in).
 *
 * @example
 * const rng = createPrng(42);
 * rng.nextFloat(); // same value on every run
 */
export function createPrng(seed: number): Prng {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`createPrng(seed): expected a safe integer, got ${seed}`);
  }
  const high = Math.floor(seed / 2 ** 32);
  let state = splitmix32((seed >>> 0) ^ splitmix32(high | 0));
  const nextUint32 = (): number => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return { nextUint32, nextFloat: () => nextUint32() / 2 ** 32 };
}

/** A fresh random seed, for callers that want sampling but did not choose a seed. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}
