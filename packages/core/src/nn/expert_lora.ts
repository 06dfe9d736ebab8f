import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { Parameter } from '../module/parameter';

/** One factor of an {@link ExpertLoraAdapter}: a plain weight, so the key ends in `.lora_A.weight`. */
export class LoraFactor extends Module {
  readonly weight: Parameter;

  constructor(shape: readonly number[]) {
    super();
    this.weight = new Parameter(shape);
  }
}

/**
 * A low-rank change of a stacked expert weight W [E, d1, d2] (each W[e] an ordinary [out, in]
 * linear weight), laid out as PEFT's `target_parameters` LoRA (`ParamWrapper`) lays out a 3-D
 * parameter, so adapters trained with PEFT load here and the other way round:
 * `lora_A.weight` [r·E, d1] (expert e's rows e·r … e·r + r − 1) and `lora_B.weight` [d2, r·E]
 * (expert e's columns e, E + e, 2E + e, …: PEFT reshapes it to [d2, r, E]), and
 * `ΔW[e][i][o] = (α/r) · Σ_j A[e·r + j][i] · B[o][j·E + e]`. A starts uniform in ±1/√d1, B at zero.
 */
export class ExpertLoraAdapter extends Module {
  readonly lora_A: LoraFactor;
  readonly lora_B: LoraFactor;

  constructor(
    readonly numExperts: number,
    /** d1: the stacked weight's second axis (PEFT's `in_features` of a 3-D parameter) */
    readonly rows: number,
    /** d2: its last axis */
    readonly cols: number,
    readonly rank: number,
    readonly scale: number,
  ) {
    super();
    const re = rank * numExperts;
    this.lora_A = new LoraFactor([re, rows]);
    this.lora_B = new LoraFactor([cols, re]);
    const bound = 1 / Math.sqrt(rows);
    this.lora_A.weight.setInitial(() => tf.randomUniform([re, rows], -bound, bound));
  }

  /** ΔW[e] [d1, d2], differentiable with respect to both factors. */
  deltaFor(expert: number): tf.Tensor {
    const { numExperts: e, rank: r, rows, cols } = this;
    return tf.tidy(() => {
      const a = tf.slice(this.lora_A.weight.value, [expert * r, 0], [r, rows]); // [r, d1]
      const b = tf.reshape(tf.slice(tf.reshape(this.lora_B.weight.value, [cols, r, e]), [0, 0, expert], [cols, r, 1]), [cols, r]);
      return tf.mul(tf.matMul(a, b, true, true), this.scale); // [d1, d2]
    });
  }

  /** ΔW [E, d1, d2] for every expert: what merging adds to the stacked weight. */
  delta(): tf.Tensor {
    return tf.tidy(() => tf.stack(Array.from({ length: this.numExperts }, (_, e) => this.deltaFor(e))));
  }
}

/**
 * A module holding a stacked expert weight that an {@link ExpertLoraAdapter} can change
 * (`@graniteflow/ops-moe`'s `ExpertLinear`): `LoraAdapters` finds such modules by these members.
 */
export interface ExpertAdaptable {
  readonly weight: Parameter;
  readonly numExperts: number;
  readonly adapter: ExpertLoraAdapter | null;
  attachAdapter(adapter: ExpertLoraAdapter | null): void;
}

/** Whether `m` holds a stacked expert weight an adapter can change (see {@link ExpertAdaptable}). */
export function isExpertAdaptable(m: Module): m is Module & ExpertAdaptable {
  const c = m as Partial<ExpertAdaptable>;
  return (
    typeof c.attachAdapter === 'function' &&
    typeof c.numExperts === 'number' &&
    c.weight instanceof Parameter &&
    c.weight.shape.length === 3
  );
}
