import { initBackend } from '@graniteflow/core';
import * as tf from '@tensorflow/tfjs-core';
import { causalConv1d, gatedRmsNorm, selectiveScan, selectiveStateUpdate, ShapeError } from '../src';

beforeAll(() => initBackend('cpu'));

/** Valid scan arguments for B = 1, T = 5, Hm = 4, P = 3, G = 2, N = 16. */
const scanArgs = () => ({
  x: tf.zeros([1, 5, 4, 3]),
  dt: tf.zeros([1, 5, 4]),
  A_log: tf.zeros([4]),
  B: tf.zeros([1, 5, 2, 16]),
  C: tf.zeros([1, 5, 2, 16]),
  D: tf.zeros([4]),
  dt_bias: tf.zeros([4]),
});

describe('argument errors name the argument and both shapes', () => {
  it('selectiveScan', () => {
    const a = scanArgs();
    expect(() => selectiveScan({ ...a, B: tf.zeros([1, 5, 16]) })).toThrow(
      'selectiveScan: B must be [B, T, G, N] = [1, 5, G, N], got [1, 5, 16]',
    );
    expect(() => selectiveScan({ ...a, C: tf.zeros([1, 5, 2, 8]) })).toThrow(
      'selectiveScan: C must be [B, T, G, N] = [1, 5, 2, 16], got [1, 5, 2, 8]',
    );
    expect(() => selectiveScan({ ...a, x: tf.zeros([5, 4, 3]) })).toThrow(
      'selectiveScan: x must be [B, T, Hm, P] = [B, T, Hm, P], got [5, 4, 3]',
    );
    expect(() => selectiveScan({ ...a, dt: tf.zeros([1, 4, 4]) })).toThrow(
      'selectiveScan: dt must be [B, T, Hm] = [1, 5, 4], got [1, 4, 4]',
    );
    expect(() => selectiveScan({ ...a, A_log: tf.zeros([3]) })).toThrow('selectiveScan: A_log must be [Hm] = [4], got [3]');
    expect(() => selectiveScan({ ...a, initialState: tf.zeros([1, 4, 3, 8]) })).toThrow(
      'selectiveScan: initialState must be [B, Hm, P, N] = [1, 4, 3, 16], got [1, 4, 3, 8]',
    );
    expect(() => selectiveScan({ ...a, B: tf.zeros([1, 5, 3, 16]), C: tf.zeros([1, 5, 3, 16]) })).toThrow(
      'selectiveScan: the number of heads Hm = 4 must be a multiple of the groups G = 3 of B [1, 5, 3, 16]',
    );
    expect(() => selectiveScan({ ...a, x: tf.zeros([1, 5, 4, 3], 'int32') })).toThrow(
      'selectiveScan: x must be float32, got int32 (shape [1, 5, 4, 3])',
    );
    expect(() => selectiveScan(a, { chunkSize: 0 })).toThrow('selectiveScan: chunkSize must be a positive integer, got 0');
    expect(() => selectiveScan(a, { timeStepLimit: [1, 0] })).toThrow(/timeStepLimit must be \[lo, hi\] with lo ≤ hi, got \[1, 0\]/);
    expect(() => selectiveScan({ ...a, B: tf.zeros([1, 5, 16]) })).toThrow(ShapeError);
  });

  it('selectiveStateUpdate', () => {
    const base = {
      x: tf.zeros([2, 4, 3]),
      dt: tf.zeros([2, 4]),
      A_log: tf.zeros([4]),
      B: tf.zeros([2, 1, 8]),
      C: tf.zeros([2, 1, 8]),
      D: tf.zeros([4]),
      dt_bias: tf.zeros([4]),
      state: tf.zeros([2, 4, 3, 8]),
    };
    expect(() => selectiveStateUpdate({ ...base, state: tf.zeros([1, 4, 3, 8]) })).toThrow(
      'selectiveStateUpdate: state must be [B, Hm, P, N] = [2, 4, 3, 8], got [1, 4, 3, 8]',
    );
    expect(() => selectiveStateUpdate({ ...base, dt: tf.zeros([2, 1, 4]) })).toThrow(
      'selectiveStateUpdate: dt must be [B, Hm] = [2, 4], got [2, 1, 4]',
    );
  });

  it('causalConv1d', () => {
    const x = tf.zeros([2, 3, 5]);
    expect(() => causalConv1d(x, tf.zeros([4, 4]))).toThrow('causalConv1d: weight must be [C, K] = [5, K], got [4, 4]');
    expect(() => causalConv1d(x, tf.zeros([5, 1, 4]))).toThrow('causalConv1d: weight must be [C, K] = [5, K], got [5, 1, 4]');
    expect(() => causalConv1d(x, tf.zeros([5, 4]), { convState: tf.zeros([2, 4, 5]) })).toThrow(
      'causalConv1d: convState must be [B, K-1, C] = [2, 3, 5], got [2, 4, 5]',
    );
    expect(() => causalConv1d(x, tf.zeros([5, 4]), { bias: tf.zeros([4]) })).toThrow('causalConv1d: bias must be [C] = [5], got [4]');
    expect(() => causalConv1d(x, tf.zeros([5, 4]), { activation: 'relu' as never })).toThrow(
      "causalConv1d: activation must be 'silu' or 'none', got 'relu'",
    );
  });

  it('gatedRmsNorm', () => {
    const y = tf.zeros([2, 6]);
    expect(() => gatedRmsNorm(y, tf.zeros([2, 5]), tf.zeros([6]))).toThrow('gatedRmsNorm: z must be [d0, D] = [2, 6], got [2, 5]');
    expect(() => gatedRmsNorm(y, y, tf.zeros([5]))).toThrow('gatedRmsNorm: weight must be [D] = [6], got [5]');
    expect(() => gatedRmsNorm(y, y, tf.zeros([6]), { groupSize: 4 })).toThrow(
      'gatedRmsNorm: groupSize must divide D = 6 (y [2, 6]), got 4',
    );
    expect(() => gatedRmsNorm(tf.zeros([2, 6], 'int32'), y, tf.zeros([6]))).toThrow('gatedRmsNorm: y must be float32, got int32');
  });
});
