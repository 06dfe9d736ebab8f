/**
 * Test helpers for graniteflow packages and for users testing their own kernels:
 * run a suite per backend, compare with tolerances, check for tensor leaks.
 * @module testing
 */
export { describeBackends, testBackends } from './describe_backends';
export { expectClose, maxAbsDiff, type Tolerance } from './assertions';
export { expectNoTensorLeak } from './leaks';
export { watchFastPath, type FastPathWatch } from './fast_path';
export { randomFloats, seededRandom } from './random';
