import { ShapeError } from '@graniteflow/core';
import type * as tf from '@tensorflow/tfjs-core';

export { ShapeError };

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Throws unless `t` is a float32 tensor. */
export function checkFloat(op: string, arg: string, t: tf.Tensor): void {
  if (t.dtype !== 'float32') {
    throw new TypeError(`${op}: ${arg} must be float32, got ${t.dtype} (shape ${fmt(t.shape)})`);
  }
}

/**
 * Throws unless `t` has the expected shape. `names` label each dimension (`['B', 'T', 'G', 'N']`),
 * `dims` give the expected sizes; a size of −1 accepts anything. The message names the argument
 * and both shapes: `selectiveScan: B must be [B, T, G, N] = [1, 5, 2, 16], got [1, 5, 16]`.
 */
export function checkShape(op: string, arg: string, t: tf.Tensor, names: string[], dims: number[]): void {
  checkFloat(op, arg, t);
  const ok = t.shape.length === dims.length && dims.every((d, i) => d < 0 || t.shape[i] === d);
  if (!ok) {
    const expected = dims.map((d, i) => (d < 0 ? names[i] : String(d)));
    throw new ShapeError(`${op}: ${arg} must be [${names.join(', ')}] = [${expected.join(', ')}], got ${fmt(t.shape)}`);
  }
}

/** Throws unless `t` has rank `names.length` (before its sizes are known). */
export function checkRank(op: string, arg: string, t: tf.Tensor, names: string[]): void {
  checkShape(
    op,
    arg,
    t,
    names,
    names.map(() => -1),
  );
}

/** Throws unless heads split evenly into groups (P12). */
export function checkGroups(op: string, heads: number, groups: number, arg: string, shape: readonly number[]): void {
  if (groups < 1 || heads % groups !== 0) {
    throw new ShapeError(`${op}: the number of heads Hm = ${heads} must be a multiple of the groups G = ${groups} of ${arg} ${fmt(shape)}`);
  }
}

/** Reads `[lo, hi]` of a time-step limit, checking it. */
export function timeStepLimit(op: string, limit: readonly [number, number] | undefined): { dtMin: number; dtMax: number } {
  const [dtMin, dtMax] = limit ?? [0, Infinity];
  if (!(dtMin <= dtMax)) throw new RangeError(`${op}: timeStepLimit must be [lo, hi] with lo ≤ hi, got [${dtMin}, ${dtMax}]`);
  return { dtMin, dtMax };
}
