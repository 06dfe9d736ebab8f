/**
 * A tensor argument of the wrong shape: thrown by the ops of every graniteflow package, with a
 * message naming the op, the argument, the expected layout and the shapes it got. A `RangeError`,
 * so callers that caught those keep working.
 */
export class ShapeError extends RangeError {
  override name = 'ShapeError';
}
