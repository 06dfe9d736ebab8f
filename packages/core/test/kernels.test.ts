import * as tf from '@tensorflow/tfjs-core';
import { defineKernel, initBackend, KernelError, nativeKernel, setKernelMode } from '../src';
import { describeBackends, expectClose, expectNoTensorLeak } from '../src/testing';

type Inputs = { x: tf.Tensor; scale: tf.Tensor; bias?: tf.Tensor };
type Attrs = { power: number };

/** How often each implementation ran, so a test can tell which one `run` chose. */
const calls = { reference: 0, fused: 0 };

/** y = scale · x^power (+ bias), z = Σ y: two outputs, an optional input. */
const ScaledPower = defineKernel<Inputs, Attrs>({
  name: 'TestScaledPower',
  inputNames: ['x', 'scale', 'bias'],
  reference: ({ x, scale, bias }, { power }) => {
    calls.reference++;
    let y = tf.mul(tf.pow(x, power), scale);
    if (bias) y = tf.add(y, bias);
    return [y, tf.sum(y)];
  },
  fused: {
    outputs: ({ x }) => [
      { shape: x.shape, dtype: 'float32' },
      { shape: [], dtype: 'float32' },
    ],
    compute: ({ x, scale, bias }, [y, z], _shapes, { power }) => {
      calls.fused++;
      for (let i = 0; i < x.length; i++) {
        y[i] = scale[0] * x[i] ** power + (bias ? bias[i] : 0);
        z[0] += y[i];
      }
    },
  },
  gradient: 'reference',
});

/** Which array types the fused body and the native body were handed for their float32 input. */
const seenArrays: string[] = [];

/** y = 2x, recording the array type it was given (the bodies may assume Float32Array for float32). */
const Doubled = defineKernel<{ x: tf.Tensor }, Record<string, never>>({
  name: 'TestDoubled',
  inputNames: ['x'],
  reference: ({ x }) => [tf.mul(x, 2)],
  fused: {
    outputs: ({ x }) => [{ shape: x.shape, dtype: 'float32' }],
    compute: ({ x }, [y]) => {
      seenArrays.push(x.constructor.name);
      for (let i = 0; i < x.length; i++) y[i] = 2 * x[i];
    },
  },
  backendKernels: {
    native: nativeKernel((_addon, { x }) => {
      seenArrays.push(x.values.constructor.name);
      return { shape: x.shape, values: (x.values as Float32Array).map((v) => 2 * v) };
    }),
  },
  gradient: 'reference',
});

describeBackends('defineKernel', (backend) => {
  const x = () => tf.tensor1d([1, 2, 3]);
  const scale = () => tf.tensor1d([2]);

  it('runs the fused kernel on cpu and wasm and agrees with the reference', () => {
    expect(ScaledPower.hasFused()).toBe(backend === 'cpu' || backend === 'wasm' || backend === 'native');
    const inputs = { x: x(), scale: scale(), bias: tf.tensor1d([0.5, 0, 1]) };
    const [y, z] = ScaledPower.run(inputs, { power: 2 });
    const [ry, rz] = ScaledPower.reference(inputs, { power: 2 });
    expectClose(y, [2.5, 8, 19]);
    expectClose(y, ry);
    expectClose(z, rz);
    const [y2] = ScaledPower.run({ x: x(), scale: scale() }, { power: 3 });
    expectClose(y2, [2, 16, 54]);
  });

  it('differentiates the fused kernel through the registered gradient', () => {
    const bias = tf.tensor1d([0.5, 0, 1]);
    const f = (xs: tf.Tensor, s: tf.Tensor) => ScaledPower.run({ x: xs, scale: s, bias }, { power: 2 })[1];
    const [gx, gs] = tf.grads(f)([x(), scale()]);
    expectClose(gx, [4, 8, 12]);
    expectClose(gs, [14]);
  });

  it('does not leak tensors', async () => {
    const inputs = { x: x(), scale: scale() };
    await expectNoTensorLeak(() => {
      const outs = ScaledPower.run(inputs, { power: 2 });
      tf.dispose(outs);
      const g = tf.grad((xs: tf.Tensor) => ScaledPower.run({ x: xs, scale: inputs.scale }, { power: 2 })[1])(inputs.x);
      g.dispose();
    });
  });

  it('kernel mode forces the reference or the fused body', () => {
    const inputs = { x: x(), scale: scale() };
    const ran = (run: () => tf.Tensor[]) => {
      const before = { ...calls };
      const outs = run();
      expectClose(outs[0], [2, 4, 6]);
      tf.dispose(outs);
      return { reference: calls.reference - before.reference, fused: calls.fused - before.fused };
    };
    const previous = setKernelMode('reference');
    try {
      expect(ran(() => ScaledPower.run(inputs, { power: 1 }))).toEqual({ reference: 1, fused: 0 });
    } finally {
      setKernelMode(previous);
    }
    const fast = ScaledPower.hasFused() ? { reference: 0, fused: 1 } : { reference: 1, fused: 0 };
    expect(ran(() => ScaledPower.run(inputs, { power: 1 }))).toEqual(fast);
    if (ScaledPower.hasFused()) {
      expect(ran(() => ScaledPower.run(inputs, { power: 1 }, 'fused'))).toEqual({ reference: 0, fused: 1 });
      setKernelMode('fused');
      try {
        expect(ran(() => ScaledPower.run(inputs, { power: 1 }))).toEqual({ reference: 0, fused: 1 });
      } finally {
        setKernelMode(previous);
      }
    } else {
      expect(() => ScaledPower.run(inputs, { power: 1 }, 'fused')).toThrow(KernelError);
    }
  });

  it('hands a float32 input cast from int32 as a Float32Array (tfjs cpu kernels keep the Int32Array)', () => {
    seenArrays.length = 0;
    const ints = tf.tensor1d([1, 2, 3], 'int32');
    const cast = tf.cast(ints, 'float32');
    const [y] = Doubled.run({ x: cast }, {});
    expect(seenArrays).toEqual(['Float32Array']);
    expectClose(y, [2, 4, 6]);
    tf.dispose([ints, cast, y]);
  });
});

describe('registration', () => {
  beforeAll(() => initBackend('cpu'));

  it('registering twice is silent', () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => {});
    ScaledPower.register();
    ScaledPower.register();
    expect(warn).not.toHaveBeenCalled();
    warn.mockRestore();
  });

  it('asking for a fused kernel a backend lacks names the kernel and the backend', () => {
    const RefOnly = defineKernel<{ x: tf.Tensor }, Record<string, never>>({
      name: 'TestRefOnly',
      inputNames: ['x'],
      reference: ({ x }) => [tf.neg(x)],
    });
    expect(() => RefOnly.fused({ x: tf.scalar(1) }, {})).toThrow(KernelError);
    expect(() => RefOnly.fused({ x: tf.scalar(1) }, {})).toThrow(/TestRefOnly has no fused implementation for backend "cpu"/);
    expectClose(RefOnly.run({ x: tf.scalar(1) }, {})[0], [-1]);
  });
});
