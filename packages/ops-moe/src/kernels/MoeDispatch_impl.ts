/**
 * Dispatch over flat arrays: a counting sort of the N·k token slots by expert id.
 *
 * Slot `s = n·k + j` is token n's j-th choice. Outputs: `order` [N·k], the slots sorted by expert
 * (stable: within one expert, ascending slot, hence ascending token); `tokens` [N·k], the token of
 * each sorted slot (`order[p] / k`); `offsets` [E + 1], expert e's rows are
 * `order[offsets[e] .. offsets[e+1])`.
 */
export function moeDispatchImpl(
  indices: Int32Array,
  k: number,
  numExperts: number,
  order: Int32Array,
  tokens: Int32Array,
  offsets: Int32Array,
): void {
  const m = indices.length;
  offsets.fill(0);
  for (let s = 0; s < m; s++) offsets[indices[s] + 1]++;
  for (let e = 0; e < numExperts; e++) offsets[e + 1] += offsets[e];
  const cursor = offsets.slice(0, numExperts);
  for (let s = 0; s < m; s++) {
    const p = cursor[indices[s]]++;
    order[p] = s;
    tokens[p] = Math.floor(s / k);
  }
}
