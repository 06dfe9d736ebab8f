import type { FlatArray } from '@graniteflow/core';

/** Narrows a kernel input to Float32Array (the public ops only admit float32 tensors). */
export function f32(a: FlatArray, name: string): Float32Array {
  if (!(a instanceof Float32Array)) throw new TypeError(`fused kernel: ${name} must be float32`);
  return a;
}

/** The inputs every SSM kernel takes besides its state: the checkpoint-named parameters and x, dt, B, C. */
export const SSM_INPUTS = ['x', 'dt', 'A_log', 'B', 'C', 'D', 'dt_bias'] as const;

/** {@link f32} for each named input. */
export function f32Inputs<K extends string>(a: { [name in K]: FlatArray }, names: readonly K[]): { [name in K]: Float32Array } {
  const out = {} as { [name in K]: Float32Array };
  for (const n of names) out[n] = f32(a[n], n);
  return out;
}

/** {@link f32} for an optional input. */
export function f32Opt(a: FlatArray | undefined, name: string): Float32Array | undefined {
  return a === undefined ? undefined : f32(a, name);
}

/** Byte addresses of heap views (absent optional arrays map to null). */
export function pointersOf<T extends Record<string, Float32Array | undefined>>(
  arrays: T,
): { [K in keyof T]: undefined extends T[K] ? number | null : number } {
  const out: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(arrays)) out[k] = v === undefined ? null : v.byteOffset;
  return out as { [K in keyof T]: undefined extends T[K] ? number | null : number };
}

/** The `values` of each named native-kernel input. */
export function mapValues<K extends string>(
  inputs: Record<string, { values: FlatArray }>,
  names: readonly K[],
): { [name in K]: FlatArray } {
  const out = {} as { [name in K]: FlatArray };
  for (const n of names) out[n] = inputs[n].values;
  return out;
}
