import * as fs from 'node:fs';
import { simdCounters, simdModulePath, webAssemblyApi } from '@graniteflow/core';
import { describeBackends, expectClose } from '@graniteflow/core/testing';
import * as tf from '@tensorflow/tfjs-core';
import { selectiveScan, selectiveStateUpdate, setSimdEnabled } from '../src';
import { OPS_MAMBA_SIMD_MODULES, scanSimdKernels, SELECTIVE_SCAN_SIMD_CALL } from '../src/kernels/wasm/scan_simd';
import { randn, randu } from './random';

const scanCalls = () => simdCounters()[SELECTIVE_SCAN_SIMD_CALL] ?? 0;

describe('the built SIMD scan module', () => {
  it('exports one scan per tile width and imports only its memory', () => {
    // The parts of WebAssembly.Module this needs (core types the rest).
    const Module = webAssemblyApi()!.Module as unknown as {
      new (bytes: Uint8Array): object;
      exports(module: object): { name: string; kind: string }[];
      imports(module: object): { module: string; name: string; kind: string }[];
    };
    const mod = new Module(fs.readFileSync(simdModulePath('selective_scan', OPS_MAMBA_SIMD_MODULES)));
    expect(
      Module.exports(mod)
        .filter((e) => e.kind === 'function')
        .map((e) => e.name)
        .sort(),
    ).toEqual(['scan_v1', 'scan_v2', 'scan_v4', 'scan_v8']);
    expect(Module.imports(mod)).toEqual([{ module: 'env', name: 'memory', kind: 'memory' }]);
  });
});

describeBackends('SIMD scan on the wasm heap', (backend) => {
  // On cpu there is no heap: these would compare the JS loop with itself.
  const onWasm = backend === 'wasm' ? it : it.skip;

  onWasm("runs on the heap behind the fused kernels' arrays only, and not with SIMD off", () => {
    const t = tf.ones([3]);
    const wasm = tf.backend() as unknown as { typedArrayFromHeap(info: object): Float32Array };
    const view = wasm.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
    expect(scanSimdKernels([view])).not.toBeNull();
    expect(scanSimdKernels([new Float32Array(3)])).toBeNull();
    const previous = setSimdEnabled(false);
    expect(scanSimdKernels([view])).toBeNull();
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
      const before = scanCalls();
      const simd = selectiveScan(args, { timeStepLimit: [0.01, 5] });
      const step = selectiveStateUpdate({
        ...args,
        x: tf.squeeze(tf.slice(args.x, [0, 0], [-1, 1]), [1]),
        dt: tf.squeeze(tf.slice(args.dt, [0, 0], [-1, 1]), [1]),
        B: tf.squeeze(tf.slice(args.B, [0, 0], [-1, 1]), [1]),
        C: tf.squeeze(tf.slice(args.C, [0, 0], [-1, 1]), [1]),
        state: args.initialState,
      });
      // The scan and the step each ran the SIMD module once: the comparison below is SIMD vs JS.
      expect(scanCalls()).toBe(before + 2);
      const previous = setSimdEnabled(false);
      try {
        const js = selectiveScan(args, { timeStepLimit: [0.01, 5] });
        expect(scanCalls()).toBe(before + 2);
        expectClose(simd.y, js.y, { atol: 1e-4, rtol: 1e-4 }, `y (${backend})`);
        expectClose(simd.finalState, js.finalState, { atol: 1e-4, rtol: 1e-4 }, 'finalState');
        expectClose(step.y, tf.reshape(tf.slice(js.y, [0, 0], [-1, 1]), [batch, Hm, P]), { atol: 1e-4, rtol: 1e-4 }, 'step y');
      } finally {
        setSimdEnabled(previous);
      }
    });
  }
});
