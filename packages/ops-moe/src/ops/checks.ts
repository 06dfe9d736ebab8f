import { ShapeError } from '@graniteflow/core';
import type * as tf from '@tensorflow/tfjs-core';

/** Anything with a shape: a tensor, or a packed weight (`PackedTensor`). */
export interface Shaped {
  readonly shape: readonly number[];
}

/** `[a,b,c]` for error messages. */
export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Throws a RangeError (an argument value out of range) prefixed with the op name. */
export function fail(op: string, message: string): never {
  throw new RangeError(`${op}: ${message}`);
}

/** Throws core's ShapeError (a tensor of the wrong shape) prefixed with the op name. */
export function failShape(op: string, message: string): never {
  throw new ShapeError(`${op}: ${message}`);
}

/** Asserts `t` has rank `rank`, describing the expected layout (e.g. `[N, E]`). */
export function checkRank(op: string, name: string, t: Shaped, rank: number, layout: string): void {
  if (t.shape.length !== rank) failShape(op, `${name} must be ${layout} (rank ${rank}), got ${shapeStr(t.shape)}.`);
}

/** Asserts the dtype of `t`. */
export function checkDtype(op: string, name: string, t: tf.Tensor, dtype: tf.DataType): void {
  if (t.dtype !== dtype) throw new TypeError(`${op}: ${name} must be ${dtype}, got ${t.dtype} (shape ${shapeStr(t.shape)}).`);
}

/**
 * Asserts that `t.shape[axis] === expected`, naming both tensors and both shapes: `t` (`name`) must
 * agree with `other` (`otherName`) on a size the layout names.
 */
export function checkDim(
  op: string,
  name: string,
  t: Shaped,
  axis: number,
  expected: number,
  otherName: string,
  other: Shaped,
  layout: string,
): void {
  const ax = axis < 0 ? t.shape.length + axis : axis;
  if (t.shape[ax] !== expected) {
    failShape(
      op,
      `${name} ${shapeStr(t.shape)} does not match ${otherName} ${shapeStr(other.shape)}: expected ${name} ${layout} ` +
        `with size ${expected} on axis ${ax}, got ${t.shape[ax]}.`,
    );
  }
}
