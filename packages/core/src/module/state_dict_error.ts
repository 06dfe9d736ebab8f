/** One tensor whose shape differs between a checkpoint and a module. */
export interface ShapeMismatch {
  name: string;
  expected: readonly number[];
  actual: readonly number[];
}

/**
 * Everything wrong between a state dict and a module, reported together: missing tensors,
 * unexpected tensors and shape mismatches, each by full dotted name.
 */
export class StateDictError extends Error {
  override name = 'StateDictError';

  constructor(
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: ShapeMismatch[],
    source?: string,
  ) {
    super(StateDictError.describe(missing, unexpected, mismatched, source));
  }

  private static describe(missing: string[], unexpected: string[], mismatched: ShapeMismatch[], source?: string): string {
    const list = (names: string[]) => names.slice(0, 20).join(', ') + (names.length > 20 ? `, … (${names.length} in all)` : '');
    const parts: string[] = [];
    if (missing.length) parts.push(`missing ${missing.length}: ${list(missing)}`);
    if (unexpected.length) parts.push(`unexpected ${unexpected.length}: ${list(unexpected)}`);
    if (mismatched.length) {
      parts.push(
        `wrong shape ${mismatched.length}: ${list(mismatched.map((m) => `${m.name} expected [${m.expected}] got [${m.actual}]`))}`,
      );
    }
    return `State dict${source ? ` from ${source}` : ''} does not match the model: ${parts.join('; ')}.`;
  }
}
