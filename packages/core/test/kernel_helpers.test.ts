import * as tf from '@tensorflow/tfjs-core';
import { defineKernel, vjp, wasmHeap, webAssemblyApi } from '../src';
import { describeBackends, expectClose } from '../src/testing';

/** y = x · idx, with idx an int32 input that carries no gradient of its own. */
const ScaleByIndex = defineKernel<{ x: tf.Tensor; idx: tf.Tensor }, Record<string, never>>({
  name: 'TestScaleByIndex',
  inputNames: ['x', 'idx'],
  reference: ({ x, idx }) => [tf.mul(x, tf.cast(idx, 'float32'))],
  fused: {
    outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
    compute: ({ x, idx }, [y]) => {
      for (let i = 0; i < x.length; i++) y[i] = x[i] * idx[i];
    },
  },
  gradient: ([dy], { idx }) => ({ x: tf.mul(dy, tf.cast(idx, 'float32')) }),
  nonDifferentiable: ['idx'],
});

describeBackends('kernel gradient helpers', (backend) => {
  it('gives an int32 input computed from the variable float32 zeros, so backprop finishes', () => {
    // idx = int(x) is on the tape: tfjs asks the kernel for a float32 gradient of it.
    const f = (x: tf.Tensor) => tf.sum(ScaleByIndex.run({ x, idx: tf.cast(x, 'int32') }, {})[0]);
    const g = tf.grad(f)(tf.tensor1d([1.5, 2.5, -3]));
    expectClose(g, [1, 2, -3]);
  });

  it('vjp sums the products over several outputs and leaves no tape behind', () => {
    const [ga, gb] = vjp(
      (a, b) => [tf.mul(a, b), tf.add(a, b)],
      [tf.tensor1d([1, 2]), tf.tensor1d([3, 4])],
      [tf.tensor1d([1, 1]), tf.tensor1d([10, 20])],
    );
    expectClose(ga, [13, 24]);
    expectClose(gb, [11, 22]);
    expect((tf.engine() as unknown as { state: { activeTape: unknown } }).state.activeTape).toBeNull();
  });

  it('vjp runs from inside a gradient function without breaking the outer backprop', () => {
    const Cube = defineKernel<{ x: tf.Tensor }, Record<string, never>>({
      name: 'TestCubeVjp',
      inputNames: ['x'],
      reference: ({ x }) => [tf.pow(x, 3)],
      fused: {
        outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
        compute: ({ x }, [y]) => {
          for (let i = 0; i < x.length; i++) y[i] = x[i] ** 3;
        },
      },
      gradient: ([dy], { x }) => ({ x: vjp((v) => tf.pow(v, 3), [x], dy)[0] }),
    });
    // d/dx Σ (x³ + x²) = 3x² + 2x: the outer tape must survive the nested gradient.
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.add(Cube.run({ x }, {})[0], tf.square(x))))(tf.tensor1d([1, 2]));
    expectClose(g, [5, 16]);
  });

  it(`wasmHeap is the tensors' heap on wasm and null elsewhere (${backend})`, () => {
    expect(webAssemblyApi()).toBeDefined();
    const heap = wasmHeap();
    if (backend !== 'wasm') {
      expect(heap).toBeNull();
      return;
    }
    expect(heap).not.toBeNull();
    const t = tf.ones([3]);
    const view = (tf.backend() as unknown as { typedArrayFromHeap(info: object): Float32Array }).typedArrayFromHeap({
      dataId: t.dataId,
      shape: t.shape,
      dtype: t.dtype,
    });
    expect(view.buffer).toBe(heap!.memory.buffer);
    const ptr = heap!.malloc(64);
    expect(ptr).toBeGreaterThan(0);
    new Float32Array(heap!.memory.buffer, ptr, 16).fill(7);
    heap!.free(ptr);
    t.dispose();
  });
});
