import * as tf from '@tensorflow/tfjs-core';
import { Parameter } from './parameter';
import { StateDictError, type ShapeMismatch } from './state_dict_error';

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Reject missing and unexpected tensors (default true). Shape mismatches always fail. */
  strict?: boolean;
  /** Named in the error message (a file or folder). */
  source?: string;
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
  checkStateDictShapes(
    shapes: Map<string, readonly number[]>,
    options: LoadStateDictOptions = {},
  ): void {
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
      throw new StateDictError(
        strict ? missing : [],
        strict ? unexpected : [],
        mismatched,
        options.source,
      );
    }
  }

  /** Disposes every parameter tensor. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}
