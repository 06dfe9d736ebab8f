/**
 * Sizes and flags of one Mamba-2 mixer, in this package's words. The granite package maps the HF
 * `config.json` keys onto it (`mamba_n_heads` → numHeads, `mamba_d_head` → headDim, …).
 */
export interface Mamba2Config {
  /** H: width of the residual stream */
  hiddenSize: number;
  /** Hm: SSM heads (`mamba_n_heads`) */
  numHeads: number;
  /** P: channels per head (`mamba_d_head`) */
  headDim: number;
  /** N: state size per channel (`mamba_d_state`) */
  stateSize: number;
  /** G: groups of B/C; head h reads group ⌊h/(Hm/G)⌋ (`mamba_n_groups`) */
  nGroups: number;
  /** K: causal conv width (`mamba_d_conv`) */
  convKernel: number;
  /** Q: chunk length of the chunked-SSD reference (`mamba_chunk_size`); never changes the result */
  chunkSize: number;
  /** eps of the gated RMSNorm (`rms_norm_eps`) */
  eps: number;
  /** conv1d has a bias (`mamba_conv_bias`) */
  convBias: boolean;
  /** in_proj / out_proj have biases (`mamba_proj_bias`) */
  projBias: boolean;
  /** (lo, hi) clamp of dt after softplus (`time_step_limit`; HF default [0, Infinity]) */
  timeStepLimit: [number, number];
  /**
   * Groups of D_in/normGroups channels the gated RMSNorm normalises separately (default 1: the
   * whole inner width, as HF's Granite and Bamba; Nemotron-H and mamba_ssm's fused kernel use
   * `n_groups`). Must divide D_in.
   */
  normGroups?: number;
}

/** D_in = Hm·P: the mixer's inner width. */
export function mambaInnerSize(c: Mamba2Config): number {
  return c.numHeads * c.headDim;
}

/** conv_dim = D_in + 2·G·N: channels through the conv (x, B, C). */
export function mambaConvDim(c: Mamba2Config): number {
  return mambaInnerSize(c) + 2 * c.nGroups * c.stateSize;
}

/** proj_dim = 2·D_in + 2·G·N + Hm: in_proj output width ([z, xBC, dt], P1). */
export function mambaProjDim(c: Mamba2Config): number {
  return mambaInnerSize(c) + mambaConvDim(c) + c.numHeads;
}

/** Throws on sizes that cannot form a mixer. */
export function validateMamba2Config(c: Mamba2Config): void {
  const positive: (keyof Mamba2Config)[] = ['hiddenSize', 'numHeads', 'headDim', 'stateSize', 'nGroups', 'convKernel', 'chunkSize'];
  for (const k of positive) {
    const v = c[k];
    if (!(typeof v === 'number' && Number.isInteger(v) && v > 0)) {
      throw new RangeError(`Mamba2Config: ${k} must be a positive integer, got ${String(v)}`);
    }
  }
  if (c.numHeads % c.nGroups !== 0) {
    throw new RangeError(`Mamba2Config: numHeads = ${c.numHeads} must be a multiple of nGroups = ${c.nGroups}`);
  }
  const normGroups = c.normGroups ?? 1;
  if (!(Number.isInteger(normGroups) && normGroups > 0 && mambaInnerSize(c) % normGroups === 0)) {
    throw new RangeError(
      `Mamba2Config: normGroups must be a positive integer dividing numHeads·headDim = ${mambaInnerSize(c)}, got ${String(c.normGroups)}`,
    );
  }
  const [lo, hi] = c.timeStepLimit;
  if (!(lo <= hi)) throw new RangeError(`Mamba2Config: timeStepLimit must be [lo, hi] with lo ≤ hi, got [${lo}, ${hi}]`);
}
