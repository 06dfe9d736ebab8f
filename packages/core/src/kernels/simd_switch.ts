import { environmentVariable } from '../environment';

let simdEnabled = environmentVariable('GRANITEFLOW_SIMD') !== '0';

/**
 * Turns graniteflow's WebAssembly SIMD kernels off (`false`: the fused wasm kernels run their plain
 * JS bodies over the heap) or back on. Also `GRANITEFLOW_SIMD=0`. Returns the previous setting. For
 * benchmarks and for bisecting a numerical difference.
 */
export function setSimdEnabled(enabled: boolean): boolean {
  const previous = simdEnabled;
  simdEnabled = enabled;
  return previous;
}

/** Whether the SIMD kernels may run (see {@link setSimdEnabled}). */
export function isSimdEnabled(): boolean {
  return simdEnabled;
}
