import * as tf from '@tensorflow/tfjs-core';
import { Linear, Module, normalInit, Parameter, type ExpertAdaptable, type ExpertLoraAdapter } from '@graniteflow/core';
import { moeExpertsWithDeltas } from '../ops/adapted_experts';
import { fail, failShape, shapeStr } from '../ops/checks';
import type { ExpertWeight, MoeExpertsOptions } from '../ops/moe_experts';
import { sparseMoeFromRouterLogits, type SparseMoeResult } from '../ops/sparse_moe';
import { topKRouter } from '../ops/top_k_router';
import { sparseMoeReference } from '../ops/sparse_moe_reference';

/** Sizes of a {@link SparseMoE} block (Granite: `hidden_size`, `intermediate_size`, `num_local_experts`, `num_experts_per_tok`). */
export interface SparseMoEConfig {
  /** H */
  hiddenSize: number;
  /** I, the hidden width of each routed expert */
  intermediateSize: number;
  /** E */
  numExperts: number;
  /** k */
  topK: number;
}

/** The router: its `layer` is a bias-free Linear H → E, so the checkpoint key is `router.layer.weight`. */
export class MoeRouter extends Module {
  readonly layer: Linear;

  constructor(hiddenSize: number, numExperts: number) {
    super();
    this.layer = new Linear(hiddenSize, numExperts);
  }
}

/**
 * Stacked expert weights `weight` \[E, out, in]: each `weight[e]` is an ordinary [out, in] linear
 * weight. `weight.pack('q4_0')` (or `'q8_0'`, `'bf16'`) holds it packed, expert e's rows contiguous,
 * and the experts then run on the packed bytes, reading only the routed experts. A LoRA adapter
 * (`LoraAdapters.attach`, expert targets) changes every expert's slice by its own low-rank delta.
 */
export class ExpertLinear extends Module implements ExpertAdaptable {
  readonly weight: Parameter;
  // A private field, so not a child: the base model's parameter names stay its own.
  #adapter: ExpertLoraAdapter | null = null;

  constructor(
    readonly numExperts: number,
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    super();
    // GraniteMoeParallelExperts: normal(0, initializer_range), as a Linear weight.
    this.weight = new Parameter([numExperts, outFeatures, inFeatures], normalInit);
  }

  /** The LoRA adapter changing the experts' weights, or null. */
  get adapter(): ExpertLoraAdapter | null {
    return this.#adapter;
  }

  /** Runs the experts with `adapter`'s change of their weights from now on (null removes it). */
  attachAdapter(adapter: ExpertLoraAdapter | null): void {
    this.#adapter = adapter;
  }

  /** The weight as the experts op takes it: packed when the parameter holds it packed, else float32. */
  get experts(): ExpertWeight {
    return this.weight.packed ?? this.weight.value;
  }
}

/**
 * Top-k mixture of SwiGLU experts (model guide: Mixture of experts). Attribute names are the
 * checkpoint key segments: `router.layer.weight` [E, H], `input_linear.weight` [E, 2I, H] (rows
 * [0, I) gate, [I, 2I) up), `output_linear.weight` [E, H, I].
 *
 * @example
 * ```ts
 * const moe = new SparseMoE({ hiddenSize: 8, intermediateSize: 16, numExperts: 4, topK: 2 });
 * const y = moe.forward(tf.randomNormal([2, 3, 8])); // [2, 3, 8]
 * [...moe.namedParameters('model.layers.0.block_sparse_moe')].map(([n]) => n);
 * // ['model.layers.0.block_sparse_moe.router.layer.weight', '….input_linear.weight', '….output_linear.weight']
 * ```
 */
export class SparseMoE extends Module {
  readonly router: MoeRouter;
  readonly input_linear: ExpertLinear;
  readonly output_linear: ExpertLinear;

  constructor(readonly config: SparseMoEConfig) {
    super();
    const { hiddenSize: h, intermediateSize: i, numExperts: e, topK: k } = config;
    for (const [name, v] of Object.entries(config)) {
      if (!Number.isInteger(v) || v < 1) fail('SparseMoE', `config.${name} must be a positive integer, got ${v}.`);
    }
    if (k > e) fail('SparseMoE', `config.topK (${k}) must not exceed config.numExperts (${e}).`);
    this.router = new MoeRouter(h, e);
    this.input_linear = new ExpertLinear(e, h, 2 * i);
    this.output_linear = new ExpertLinear(e, i, h);
  }

  /** x [..., H] → [..., H] */
  forward(x: tf.Tensor, options?: MoeExpertsOptions): tf.Tensor {
    const { output, routerLogits } = this.forwardWithRouterLogits(x, options);
    routerLogits.dispose();
    return output;
  }

  /** The output and the router logits [N, E] (N = product of x's leading dims) for {@link loadBalancingLoss}. */
  forwardWithRouterLogits(x: tf.Tensor, options?: MoeExpertsOptions): SparseMoeResult {
    this.checkInput(x);
    const [w1, w2] = [this.input_linear.weight, this.output_linear.weight];
    if ((w1.packed === null) !== (w2.packed === null)) {
      const [packed, float] = w1.packed !== null ? ['input_linear', 'output_linear'] : ['output_linear', 'input_linear'];
      fail(
        'SparseMoE',
        `input_linear.weight is held as ${w1.dtype} but output_linear.weight as ${w2.dtype}: the experts run ` +
          `with both weights packed (in any formats) or both float32; pack ${float}.weight too, or unpack ${packed}.weight.`,
      );
    }
    // The router Linear runs on its own [H, E] layout: handing sparseMoe the checkpoint's [E, H]
    // transposed the weight every call (3.7 ms of an H-Tiny layer's decode step on native).
    const routerLogits = tf.tidy(() => this.router.layer.forward(tf.reshape(x, [-1, this.config.hiddenSize]))); // [N, E]
    const [a1, a2] = [this.input_linear.adapter, this.output_linear.adapter];
    if (a1 === null && a2 === null) {
      return sparseMoeFromRouterLogits(x, routerLogits, this.input_linear.experts, this.output_linear.experts, this.config.topK, options);
    }
    // Adapted experts: each routed expert's weights plus its delta, one expert at a time.
    return tf.tidy(() => {
      const { indices, weights } = topKRouter(routerLogits, this.config.topK);
      const delta = (a: ExpertLoraAdapter | null) => (a === null ? null : (e: number) => a.deltaFor(e));
      const out = moeExpertsWithDeltas(
        tf.reshape(x, [-1, this.config.hiddenSize]),
        this.input_linear.experts,
        this.output_linear.experts,
        indices,
        weights,
        delta(a1),
        delta(a2),
      );
      return { output: tf.reshape(out, x.shape), routerLogits };
    });
  }

  /**
   * The dense reference of {@link forward} (every expert on every token): tests and fallback only.
   * Packed experts are unpacked whole for it (all E of them, for the duration of the call).
   */
  forwardDense(x: tf.Tensor): tf.Tensor {
    this.checkInput(x);
    // Inside the tidy: an unpacked copy is freed at its end, a float32 value is the parameter's own.
    const floats = (w: Parameter) => (w.packed !== null ? w.checkpointValue() : w.value);
    return tf.tidy(() => {
      const h = this.config.hiddenSize;
      const { output } = sparseMoeReference(
        tf.reshape(x, [-1, h]),
        this.router.layer.weight.checkpointValue(),
        floats(this.input_linear.weight),
        floats(this.output_linear.weight),
        this.config.topK,
      );
      return tf.reshape(output, x.shape);
    });
  }

  private checkInput(x: tf.Tensor): void {
    const h = this.config.hiddenSize;
    if (x.rank < 1 || x.shape[x.rank - 1] !== h) {
      failShape(
        'SparseMoE',
        `x must be [..., ${h}] to match router.layer.weight ${shapeStr(this.router.layer.weight.shape)}, got ${shapeStr(x.shape)}.`,
      );
    }
  }
}
