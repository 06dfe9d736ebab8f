import * as tf from '@tensorflow/tfjs-core';

/** A named tensor, as tfjs optimizers exchange weights (tfjs-core does not export the type). @inline */
type NamedTensor = { name: string; tensor: tf.Tensor };

/** Options of {@link AdamW}; the defaults are PyTorch's `torch.optim.AdamW`. */
export interface AdamWOptions {
  /** Step size (default 1e-3); {@link AdamW.learningRate} can change it between steps (schedules do). */
  learningRate?: number;
  /** Decay of the first-moment average (default 0.9). */
  beta1?: number;
  /** Decay of the second-moment average (default 0.999). */
  beta2?: number;
  /** Added to the root of the second moment (default 1e-8). */
  epsilon?: number;
  /** Decoupled weight decay λ: each step multiplies a decayed weight by (1 − lr·λ) (default 0.01). */
  weightDecay?: number;
  /**
   * Which variables decay (default: those of rank ≥ 2, the matrices; biases, norm weights and
   * Mamba-2's per-head `A_log`, `D`, `dt_bias` do not, as in most LM recipes).
   */
  decays?: (variable: tf.Variable) => boolean;
}

/** The two moment averages AdamW keeps for one variable. */
interface Moments {
  m: tf.Variable;
  v: tf.Variable;
}

/**
 * Adam with decoupled weight decay (Loshchilov & Hutter; PyTorch's `AdamW`), which tfjs lacks:
 * `p ← p·(1 − lr·λ) − lr · m̂ / (√v̂ + ε)`, the decay applied to the weight itself rather than
 * added to the gradient as L2 (which Adam's scaling would distort). A tfjs `Optimizer`, so
 * `minimize`, `applyGradients`, `getWeights` / `setWeights` work as with `tf.train.adam`. Moments
 * are kept per variable name, so a step whose gradients skip a variable leaves its moments alone.
 */
export class AdamW extends tf.Optimizer {
  static get className(): string {
    return 'AdamW';
  }

  learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  private readonly decays: (variable: tf.Variable) => boolean;
  private readonly moments = new Map<string, Moments>();

  constructor(options: AdamWOptions = {}) {
    super();
    this.learningRate = options.learningRate ?? 1e-3;
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.decays = options.decays ?? ((v) => v.rank >= 2);
    this.iterations_ = 0;
    for (const [key, value, ok] of [
      ['learningRate', this.learningRate, this.learningRate >= 0],
      ['beta1', this.beta1, this.beta1 >= 0 && this.beta1 < 1],
      ['beta2', this.beta2, this.beta2 >= 0 && this.beta2 < 1],
      ['epsilon', this.epsilon, this.epsilon > 0],
      ['weightDecay', this.weightDecay, this.weightDecay >= 0],
    ] as const) {
      if (!ok || !Number.isFinite(value)) throw new RangeError(`AdamW ${key} is out of range: ${value}.`);
    }
  }

  applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const grads: [string, tf.Tensor][] = Array.isArray(variableGradients)
      ? variableGradients.map((g) => [g.name, g.tensor])
      : Object.entries(variableGradients);
    this.incrementIterations();
    const t = this.iterations;
    const lr = this.learningRate;
    const firstCorrection = 1 - this.beta1 ** t;
    const secondCorrection = 1 - this.beta2 ** t;
    for (const [name, gradient] of grads) {
      if (gradient == null) continue;
      const variable = tf.engine().registeredVariables[name];
      if (variable === undefined) throw new RangeError(`AdamW: no variable named "${name}" is registered.`);
      const moments = this.momentsOf(name, variable);
      tf.tidy(() => {
        const m = tf.add(tf.mul(moments.m, this.beta1), tf.mul(gradient, 1 - this.beta1));
        const v = tf.add(tf.mul(moments.v, this.beta2), tf.mul(tf.square(gradient), 1 - this.beta2));
        moments.m.assign(m);
        moments.v.assign(v);
        const step = tf.div(tf.div(m, firstCorrection), tf.add(tf.sqrt(tf.div(v, secondCorrection)), this.epsilon));
        const decayed = this.weightDecay > 0 && this.decays(variable) ? tf.mul(variable, 1 - lr * this.weightDecay) : variable;
        variable.assign(tf.sub(decayed, tf.mul(step, lr)));
      });
    }
  }

  private momentsOf(name: string, variable: tf.Variable): Moments {
    let moments = this.moments.get(name);
    if (moments === undefined) {
      moments = tf.tidy(() => ({ m: tf.variable(tf.zerosLike(variable), false), v: tf.variable(tf.zerosLike(variable), false) }));
      this.moments.set(name, moments);
    }
    return moments;
  }

  /** The moments of `variable` (live, not copies), or undefined before its first step. */
  momentsFor(variable: tf.Variable): { m: tf.Tensor; v: tf.Tensor } | undefined {
    return this.moments.get(variable.name);
  }

  /**
   * Sets the moments of `variable` (copies of `m` and `v`, its shape), e.g. when resuming from a
   * checkpoint where variable names differ but parameter names do not.
   */
  setMomentsFor(variable: tf.Variable, m: tf.Tensor, v: tf.Tensor): void {
    for (const [key, t] of [
      ['m', m],
      ['v', v],
    ] as const) {
      if (t.shape.length !== variable.shape.length || t.shape.some((d, i) => d !== variable.shape[i])) {
        throw new RangeError(`AdamW.setMomentsFor: ${key} has shape [${t.shape}], the variable [${variable.shape}].`);
      }
    }
    const moments = this.momentsOf(variable.name, variable);
    moments.m.assign(tf.clone(m));
    moments.v.assign(tf.clone(v));
  }

  /** Sets the step count (bias correction resumes from it). */
  setIterations(iterations: number): void {
    if (!Number.isInteger(iterations) || iterations < 0)
      throw new RangeError(`AdamW iterations must be a whole number ≥ 0, got ${iterations}.`);
    this.iterations_ = iterations;
  }

  override dispose(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.moments.clear();
  }

  override async getWeights(): Promise<NamedTensor[]> {
    const weights: NamedTensor[] = [await this.saveIterations()];
    for (const [name, { m, v }] of this.moments) weights.push({ name: `${name}/m`, tensor: m }, { name: `${name}/v`, tensor: v });
    return weights;
  }

  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    for (const { name, tensor } of rest) {
      const slash = name.lastIndexOf('/');
      const variableName = name.slice(0, slash);
      const kind = name.slice(slash + 1);
      const variable = tf.engine().registeredVariables[variableName];
      if (variable === undefined || (kind !== 'm' && kind !== 'v'))
        throw new RangeError(`AdamW.setWeights: "${name}" names no moment of a registered variable.`);
      const moments = this.momentsOf(variableName, variable);
      moments[kind].assign(tf.clone(tensor));
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon, weightDecay: this.weightDecay };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    return new cls(config as AdamWOptions);
  }
}
