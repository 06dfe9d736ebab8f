import * as tf from '@tensorflow/tfjs-core';

/** Tolerances of {@link expectClose}: |a − e| ≤ atol + rtol·|e| element-wise. */
export interface Tolerance {
  atol?: number;
  rtol?: number;
}

/** @inline */
type ArrayLikeOrTensor = tf.Tensor | ArrayLike<number>;

function valuesOf(x: ArrayLikeOrTensor): ArrayLike<number> {
  return x instanceof tf.Tensor ? (x.dataSync() as ArrayLike<number>) : x;
}

/** The largest |a − e| over all elements. */
export function maxAbsDiff(actual: ArrayLikeOrTensor, expected: ArrayLikeOrTensor): number {
  const a = valuesOf(actual);
  const e = valuesOf(expected);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - e[i]));
  return m;
}

/**
 * Asserts equal shapes (for tensors) and element-wise closeness, reporting the worst element,
 * its index and both values.
 */
export function expectClose(
  actual: ArrayLikeOrTensor,
  expected: ArrayLikeOrTensor,
  { atol = 1e-5, rtol = 1e-5 }: Tolerance = {},
  label = 'values',
): void {
  if (actual instanceof tf.Tensor && expected instanceof tf.Tensor) {
    if (actual.shape.join(',') !== expected.shape.join(',')) {
      throw new Error(`${label}: shape [${actual.shape}] differs from expected [${expected.shape}]`);
    }
  }
  const a = valuesOf(actual);
  const e = valuesOf(expected);
  if (a.length !== e.length) throw new Error(`${label}: ${a.length} values, expected ${e.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.length; i++) {
    const diff = Math.abs(a[i] - e[i]);
    const excess = diff - (atol + rtol * Math.abs(e[i]));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: element ${worst} is ${a[worst]}, expected ${e[worst]} (|Δ| ${Math.abs(a[worst] - e[worst])}, ` +
        `atol ${atol}, rtol ${rtol}; max |Δ| over all ${maxAbsDiff(a, e)})`,
    );
  }
}
