import { selectiveScanImpl, type ScanDims } from './SelectiveScan_impl';

/** Flat inputs of {@link selectiveStateUpdateImpl} (layouts as in `SelectiveStateUpdateInputs`). */
export interface StateUpdateArrays {
  x: Float32Array; // [B, Hm, P]
  dt: Float32Array; // [B, Hm]
  A_log: Float32Array; // [Hm]
  B: Float32Array; // [B, G, N]
  C: Float32Array; // [B, G, N]
  D: Float32Array; // [Hm]
  dt_bias: Float32Array; // [Hm]
  state: Float32Array; // [B, Hm, P, N]
}

/**
 * One decode step of the recurrence (model guide: Decode step). A single-token step has exactly the
 * layout of a scan with T = 1 ([B, 1, Hm, P] is [B, Hm, P]), so it is that scan started from
 * `state`.
 */
export function selectiveStateUpdateImpl(
  a: StateUpdateArrays,
  dims: Omit<ScanDims, 'seqLen'>,
  dtMin: number,
  dtMax: number,
  out?: { y: Float32Array; newState: Float32Array },
): { y: Float32Array; newState: Float32Array } {
  const r = selectiveScanImpl(
    { ...a, initialState: a.state },
    { ...dims, seqLen: 1 },
    dtMin,
    dtMax,
    out ? { y: out.y, finalState: out.newState } : undefined,
  );
  return { y: r.y, newState: r.finalState };
}
