import type { Kernel, KernelAttrs, KernelInputs } from '../kernels/define_kernel';
import { nativeAddon } from '../native/native_addon';
import { NATIVE_BACKEND } from '../native/native_backend';

/** Counts the runs of a kernel's fast path on the active backend; see {@link watchFastPath}. */
export interface FastPathWatch {
  /** Fast-path runs since the watch started. */
  calls(): number;
  /** Stops counting (restores the kernel's body). */
  restore(): void;
}

function nativeCalls(counter: string): number {
  const perLevel = nativeAddon()?.counters()[counter] ?? {};
  return Object.values(perLevel).reduce((a, b) => a + b, 0);
}

/**
 * Watches the fast path of `kernel` on `backend`, so a test proves it ran rather than a silent
 * fallback: on `native`, the `@graniteflow/native` call counter `nativeCounter` (e.g.
 * `matmul.q4_0`); elsewhere, or for a kernel without a native body (no `nativeCounter`), calls of
 * the kernel's fused body.
 */
export function watchFastPath<I extends KernelInputs, A extends KernelAttrs>(
  backend: string,
  kernel: Kernel<I, A>,
  nativeCounter?: string,
): FastPathWatch {
  if (backend === NATIVE_BACKEND && nativeCounter !== undefined) {
    const start = nativeCalls(nativeCounter);
    return { calls: () => nativeCalls(nativeCounter) - start, restore: () => {} };
  }
  const body = kernel.definition.fused;
  if (body === undefined) throw new Error(`Kernel ${kernel.name} has no fused body to watch.`);
  const compute = body.compute;
  let calls = 0;
  body.compute = (...args) => {
    calls++;
    return compute.apply(body, args);
  };
  return { calls: () => calls, restore: () => void (body.compute = compute) };
}
