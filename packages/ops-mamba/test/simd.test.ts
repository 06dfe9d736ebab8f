import { webAssemblyApi } from '@graniteflow/core';
import { describeBackends, expectClose } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { selectiveScan, selectiveStateUpdate, setSimdEnabled } from '../src';
import { scanModuleBytes } from '../src/kernels/wasm/scan_simd_module';
import { wasmHeapOf } from '../src/kernels/wasm/wasm_heap';
import { randn, randu } from './random';

describe('the generated SIMD scan module', () => {
  it('is valid WebAssembly', () => {
    expect(webAssemblyApi()!.validate(scanModuleBytes())).toBe(true);
  });
});

describeBackends('SIMD scan on the wasm heap', (backend) => {
  // On cpu there is no heap: these would compare the JS loop with itself.
  const onWasm = backend === 'wasm' ? it : it.skip;

  onWasm('finds the heap behind the fused kernels\' arrays', () => {
    const t = tf.ones([3]);
    const wasm = tf.backend() as unknown as { typedArrayFromHeap(info: object): Float32Array };
    const view = wasm.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
    expect(wasmHeapOf([view])).not.toBeNull();
    expect(wasmHeapOf([new Float32Array(3)])).toBeNull();
    const previous = setSimdEnabled(false);
    expect(wasmHeapOf([view])).toBeNull();
    setSimdEnabled(previous);
    t.dispose();
  });

  // Every tile width (N = 4, 8, 16, 32·k), G > 1, an initial state, B > 1.
  for (const N of [4, 8, 16, 96]) {
    onWasm(`equals the JS loop: N = ${N}`, () => {
      const [batch, T, Hm, P, G] = [2, 7, 4, 5, 2];
      const args = {
        x: randn([batch, T, Hm, P]),
        dt: randn([batch, T, Hm]),
        A_log: randu([Hm], -1, 1),
        B: randn([batch, T, G, N]),
        C: randn([batch, T, G, N]),
        D: randn([Hm]),
        dt_bias: randn([Hm], 0.5),
        initialState: randn([batch, Hm, P, N]),
      };
      const simd = selectiveScan(args, { timeStepLimit: [0.01, 5] });
      const step = selectiveStateUpdate({
        ...args,
        x: tf.squeeze(tf.slice(args.x, [0, 0], [-1, 1]), [1]),
        dt: tf.squeeze(tf.slice(args.dt, [0, 0], [-1, 1]), [1]),
        B: tf.squeeze(tf.slice(args.B, [0, 0], [-1, 1]), [1]),
        C: tf.squeeze(tf.slice(args.C, [0, 0], [-1, 1]), [1]),
        state: args.initialState,
      });
      const previous = setSimdEnabled(false);
      try {
        const js = selectiveScan(args, { timeStepLimit: [0.01, 5] });
        expectClose(simd.y, js.y, { atol: 1e-4, rtol: 1e-4 }, `y (${backend})`);
        expectClose(simd.finalState, js.finalState, { atol: 1e-4, rtol: 1e-4 }, 'finalState');
        expectClose(step.y, tf.reshape(tf.slice(js.y, [0, 0], [-1, 1]), [batch, Hm, P]), { atol: 1e-4, rtol: 1e-4 }, 'step y');
      } finally {
        setSimdEnabled(previous);
      }
    });
  }
});
