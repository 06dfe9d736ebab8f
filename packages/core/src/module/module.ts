import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_INIT_STD, parameterSeed, type InitContext } from './initializers';
import { Parameter } from './parameter';
import { StateDictError, type ShapeMismatch } from './state_dict_error';

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Reject missing and unexpected tensors (default true). Shape mismatches always fail. */
  strict?: boolean;
  /** Named in the error message (a file or folder). */
  source?: string;
}

/**
 * How {@link Module.initialize} sets weights: `'hf'` as Hugging Face initializes the model family
 * (each module declares its parameters' {@link Parameter.initializer}), `'zeros'`, or a function
 * returning a parameter's value in checkpoint layout.
 */
export type InitScheme = 'hf' | 'zeros' | ((name: string, parameter: Parameter, context: InitContext) => tf.Tensor);

/** Options of {@link Module.initialize}. */
export interface InitializeOptions {
  /** Standard deviation of normal initializers (Hugging Face's `initializer_range`; default 0.02). */
  std?: number;
  /** Makes random initializers reproducible: each parameter draws from its own seed derived from this and its name. */
  seed?: number;
  /**
   * Set only what a weight reads as until assigned (nothing allocated now; weights that hold a
   * value keep it), so a skeleton about to be loaded costs nothing. Default false: assign now.
   */
  lazy?: boolean;
}

/** Which parameters {@link Module.freeze} means: a dotted name with `*` (one segment) and `**` (any), a RegExp, or a test. */
export type ParameterPattern = string | RegExp | ((name: string) => boolean);

function patternTest(pattern: ParameterPattern): (name: string) => boolean {
  if (typeof pattern === 'function') return pattern;
  if (pattern instanceof RegExp) return (name) => pattern.test(name);
  const source = pattern
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^.]*'),
    )
    .join('.*');
  const re = new RegExp(`^${source}$`);
  return (name) => re.test(name);
}

/** What a state dict may be: a Map or a plain record from dotted names to tensors. */
export type StateDict = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

/**
 * A tree of named parameters. Attribute names mirror checkpoint key segments verbatim
 * (`in_proj`, `A_log`), arrays of modules become numbered segments, so
 * {@link Module.namedParameters} yields `model.layers.3.mamba.A_log` with no name table.
 */
export abstract class Module {
  /** Direct children, in declaration order: parameters, modules and arrays of modules. */
  protected *children(): Generator<[string, Parameter | Module]> {
    for (const [key, value] of Object.entries(this)) {
      if (value instanceof Parameter || value instanceof Module) {
        yield [key, value];
      } else if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item instanceof Parameter || item instanceof Module) yield [`${key}.${i}`, item];
        }
      }
    }
  }

  /** Every parameter with its dotted path, depth first in declaration order. */
  *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [key, child] of this.children()) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (child instanceof Parameter) yield [name, child];
      else yield* child.namedParameters(name);
    }
  }

  /** Every submodule with its dotted path (the root is `''`). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [key, child] of this.children()) {
      if (child instanceof Module) yield* child.namedModules(prefix ? `${prefix}.${key}` : key);
    }
  }

  /**
   * The parameters an optimizer should update: trainable ({@link Module.freeze}) and not packed,
   * with their dotted names.
   */
  *trainableParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [name, p] of this.namedParameters(prefix)) if (p.trainable && p.packed === null) yield [name, p];
  }

  /**
   * The variables of {@link Module.trainableParameters}, e.g. the `varList` of
   * `optimizer.minimize(loss, false, model.trainableVariables())`, so only this module is trained.
   */
  trainableVariables(): tf.Variable[] {
    return [...this.trainableParameters()].map(([, p]) => p.value);
  }

  /**
   * Stops training the parameters matching `pattern` (see {@link ParameterPattern}), e.g.
   * `model.freeze('model.embed_tokens.*')` or `model.freeze('**')` then `unfreeze('**.lora_*')`.
   * Returns how many matched; throws when none did, naming a few parameters, since a typo would
   * otherwise silently train everything.
   */
  freeze(pattern: ParameterPattern): number {
    return this.setTrainable(pattern, false, 'freeze');
  }

  /** Trains the parameters matching `pattern` again (see {@link Module.freeze}). */
  unfreeze(pattern: ParameterPattern): number {
    return this.setTrainable(pattern, true, 'unfreeze');
  }

  private setTrainable(pattern: ParameterPattern, on: boolean, verb: string): number {
    const test = patternTest(pattern);
    const params = [...this.namedParameters()];
    let matched = 0;
    for (const [name, p] of params) {
      if (!test(name)) continue;
      p.trainable = on;
      matched++;
    }
    if (matched === 0) {
      const some = params
        .slice(0, 3)
        .map(([n]) => n)
        .join(', ');
      throw new RangeError(`${verb}(${String(pattern)}): no parameter matches; names look like ${some || '(this module has none)'}.`);
    }
    return matched;
  }

  /**
   * Sets every parameter's value (see {@link InitScheme}); returns the module. Packed weights
   * become float32 again unless `lazy`.
   *
   * @example
   * ```ts
   * const model = new MyHybrid(config).initialize('hf', { std: config.initializer_range, seed: 1 });
   * ```
   */
  initialize(scheme: InitScheme = 'hf', options: InitializeOptions = {}): this {
    const std = options.std ?? DEFAULT_INIT_STD;
    if (!(std >= 0) || !Number.isFinite(std)) throw new RangeError(`initialize: std must be a finite number ≥ 0, got ${std}.`);
    for (const [name, p] of this.namedParameters()) {
      const context: InitContext = { std, seed: options.seed === undefined ? undefined : parameterSeed(options.seed, name) };
      const shape = [...p.shape];
      const make =
        scheme === 'hf' ? () => p.initializer(shape, context) : scheme === 'zeros' ? () => tf.zeros(shape) : () => scheme(name, p, context);
      if (options.lazy) p.setInitial(make);
      else p.assign(tf.tidy(make));
    }
    return this;
  }

  /** Number of scalars across all parameters. */
  parameterCount(): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) n += p.size;
    return n;
  }

  /** Every parameter by dotted name, in checkpoint layout, as new tensors the caller owns. */
  stateDict(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [name, p] of this.namedParameters()) out.set(name, p.checkpointValue());
    return out;
  }

  /**
   * Assigns tensors by dotted name. Every problem (missing, unexpected, mis-shaped) is collected
   * and reported in one {@link StateDictError}; nothing is assigned unless all checks pass.
   * The module takes ownership of the tensors it assigns; unassigned ones stay the caller's.
   */
  loadStateDict(tensors: StateDict, options: LoadStateDictOptions = {}): void {
    const given = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
    const shapes = new Map<string, readonly number[]>();
    for (const [name, t] of given) shapes.set(name, t.shape);
    this.checkStateDictShapes(shapes, options);
    for (const [name, p] of this.namedParameters()) {
      const t = given.get(name);
      if (t !== undefined) p.assign(t);
    }
  }

  /**
   * The checks of {@link Module.loadStateDict} on names and shapes alone, so a checkpoint can be
   * validated from its headers before any tensor data is read.
   */
  checkStateDictShapes(shapes: Map<string, readonly number[]>, options: LoadStateDictOptions = {}): void {
    const strict = options.strict ?? true;
    const params = new Map(this.namedParameters());
    const missing: string[] = [];
    const mismatched: ShapeMismatch[] = [];
    for (const [name, p] of params) {
      const shape = shapes.get(name);
      if (shape === undefined) {
        missing.push(name);
      } else if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) {
        mismatched.push({ name, expected: p.shape, actual: shape });
      }
    }
    const unexpected = [...shapes.keys()].filter((k) => !params.has(k));
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      throw new StateDictError(strict ? missing : [], strict ? unexpected : [], mismatched, options.source);
    }
  }

  /** Disposes every parameter tensor. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}
