/**
 * Restricts a logits row to allowed token ids before sampling (constrained decoding).
 *
 * @param logits Modified in place: every disallowed entry becomes −∞.
 * @param allowed A mask (1 = allowed, indices past its end are disallowed), e.g.
 *   `JsonConstraint.allowedTokens()`, or a list of allowed ids.
 * @throws RangeError when no entry of `logits` is allowed (sampling would have nothing to pick).
 * @example
 * maskLogits(logits, constraint.allowedTokens());
 * const next = sampler.sample(logits, history);
 */
export function maskLogits(logits: Float32Array, allowed: Uint8Array | readonly number[]): void {
  let kept = 0;
  if (allowed instanceof Uint8Array) {
    const n = Math.min(logits.length, allowed.length);
    for (let i = 0; i < n; i++) {
      if (allowed[i] === 0) logits[i] = -Infinity;
      else kept++;
    }
    if (n < logits.length) logits.fill(-Infinity, n);
  } else {
    const keep = new Uint8Array(logits.length);
    for (const id of allowed) if (Number.isInteger(id) && id >= 0 && id < logits.length) keep[id] = 1;
    for (let i = 0; i < logits.length; i++) {
      if (keep[i] === 0) logits[i] = -Infinity;
      else kept++;
    }
  }
  if (kept === 0) throw new RangeError('maskLogits: no token is allowed');
}
