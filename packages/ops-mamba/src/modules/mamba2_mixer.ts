import { Linear, Module, Parameter } from '@graniteflow/core';
import * as tf from '@tensorflow/tfjs-core';
import { causalConv1d } from '../ops/causal_conv1d';
import { selectiveScan } from '../ops/selective_scan';
import { selectiveStateUpdate } from '../ops/selective_state_update';
import { DepthwiseConv1d } from './depthwise_conv1d';
import { GatedRMSNorm } from './gated_rms_norm_module';
import { mambaConvDim, mambaInnerSize, mambaProjDim, validateMamba2Config, type Mamba2Config } from './mamba2_config';
import { MambaCache } from './mamba_cache';

/** Options of {@link Mamba2Mixer.forward}. */
export interface Mamba2ForwardOptions {
  /** Recurrent state to continue from; updated in place (replaced tensors are disposed). */
  cache?: MambaCache;
  /** \[B, T]: 1 = real token, 0 = left padding (HF zeroes padded positions before in_proj and after the conv). */
  mask?: tf.Tensor;
}

/**
 * The Mamba-2 mixer (model guide: The Mamba-2 mixer), built from this package's ops and core's
 * Linear. Attribute names are the checkpoint key segments, so
 * `namedParameters('model.layers.0.mamba')` yields `model.layers.0.mamba.in_proj.weight`,
 * `…conv1d.weight`, `…A_log`, … (model guide: Checkpoint format).
 *
 * Parameters start as HF initialises them where that matters for a random model (A_log = log(1..Hm),
 * dt_bias = 1, D = 1, norm = 1); projections and conv read as zeros until loaded.
 */
export class Mamba2Mixer extends Module {
  // Snake case: the checkpoint's key segments, verbatim.
  readonly in_proj: Linear;
  readonly conv1d: DepthwiseConv1d;
  readonly dt_bias: Parameter;
  readonly A_log: Parameter;
  readonly D: Parameter;
  readonly norm: GatedRMSNorm;
  readonly out_proj: Linear;

  constructor(readonly config: Mamba2Config) {
    super();
    validateMamba2Config(config);
    const { hiddenSize: H, numHeads: Hm } = config;
    const dIn = mambaInnerSize(config);
    this.in_proj = new Linear(H, mambaProjDim(config), { bias: config.projBias });
    this.conv1d = new DepthwiseConv1d(mambaConvDim(config), config.convKernel, { bias: config.convBias });
    this.dt_bias = new Parameter([Hm], 1);
    this.A_log = new Parameter([Hm], () => tf.log(tf.range(1, Hm + 1)));
    this.D = new Parameter([Hm], 1);
    this.norm = new GatedRMSNorm(dIn, config.eps, dIn / (config.normGroups ?? 1));
    this.out_proj = new Linear(dIn, H, { bias: config.projBias });
  }

  /** A zeroed {@link MambaCache} for `batch` sequences. */
  makeCache(batch: number): MambaCache {
    return MambaCache.zeros(this.config, batch);
  }

  /**
   * u [B, T, H] → [B, T, H]. With a cache, continues from its state exactly (P15): T = 1 runs the
   * recurrent step, T > 1 runs the conv from the cached inputs and the scan from the cached state.
   */
  forward(u: tf.Tensor, options: Mamba2ForwardOptions = {}): tf.Tensor {
    const { cache, mask } = options;
    const c = this.config;
    const { numHeads: Hm, headDim: P, nGroups: G, stateSize: N } = c;
    const dIn = mambaInnerSize(c);
    const convDim = mambaConvDim(c);
    if (u.rank !== 3 || u.shape[2] !== c.hiddenSize) {
      throw new RangeError(`Mamba2Mixer: u must be [B, T, H] = [B, T, ${c.hiddenSize}], got [${u.shape.join(', ')}]`);
    }
    const [batch, T] = u.shape;
    if (mask && (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== T)) {
      throw new RangeError(`Mamba2Mixer: mask must be [B, T] = [${batch}, ${T}], got [${mask.shape.join(', ')}]`);
    }
    if (cache && cache.batch !== batch) {
      throw new RangeError(`Mamba2Mixer: cache holds ${cache.batch} sequences, u [${u.shape.join(', ')}] has ${batch}`);
    }
    return tf.tidy(() => {
      const keep = mask ? tf.expandDims(tf.cast(mask, 'float32'), -1) : null; // [B, T, 1]
      const zxbcdt = this.in_proj.forward(keep ? tf.mul(u, keep) : u); // [B, T, proj_dim]
      // Split order [z, xBC, dt] (P1); only xBC is convolved (P2).
      const [z, xBC, dtRaw] = tf.split(zxbcdt, [dIn, convDim, Hm], -1);
      const conv = causalConv1d(xBC, this.conv1d.taps(), {
        bias: this.conv1d.bias?.value,
        convState: cache?.convState,
        activation: 'silu',
      });
      const xBCact = keep ? tf.mul(conv.y, keep) : conv.y; // [B, T, conv_dim]
      const [xs, Bs, Cs] = tf.split(xBCact, [dIn, G * N, G * N], -1);
      const params = { A_log: this.A_log.value, D: this.D.value, dt_bias: this.dt_bias.value };
      let y: tf.Tensor; // [B, T, D_in]
      let ssmState: tf.Tensor;
      if (cache && T === 1) {
        const step = selectiveStateUpdate(
          {
            x: tf.reshape(xs, [batch, Hm, P]),
            dt: tf.reshape(dtRaw, [batch, Hm]),
            B: tf.reshape(Bs, [batch, G, N]),
            C: tf.reshape(Cs, [batch, G, N]),
            state: cache.ssmState,
            ...params,
          },
          // The cache replaces (and disposes) its state right below.
          { timeStepLimit: c.timeStepLimit, reuseState: true },
        );
        y = tf.reshape(step.y, [batch, 1, dIn]);
        ssmState = step.state;
      } else {
        const scan = selectiveScan(
          {
            x: tf.reshape(xs, [batch, T, Hm, P]),
            dt: dtRaw,
            B: tf.reshape(Bs, [batch, T, G, N]),
            C: tf.reshape(Cs, [batch, T, G, N]),
            initialState: cache?.ssmState,
            ...params,
          },
          { timeStepLimit: c.timeStepLimit, chunkSize: c.chunkSize },
        );
        y = tf.reshape(scan.y, [batch, T, dIn]);
        ssmState = scan.finalState;
      }
      cache?.update(conv.convState, ssmState, T);
      return this.out_proj.forward(this.norm.forward(y, z)); // [B, T, H]
    });
  }
}
