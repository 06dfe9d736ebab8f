import './register_tfjs_gradients';
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc } from '@tensorflow/tfjs-core';
import type { FusedKernel } from './fused_kernel';
import { cpuKernelFunc, wasmKernelFunc } from './backend_adapters';
import { PRESENT_INPUTS_ATTR, presentInputNames } from './present_inputs';
import { vjp } from './vjp';
import { environmentVariable } from '../environment';

/** Inputs of a kernel: named tensors, some possibly optional. */
export type KernelInputs = { [name: string]: tf.Tensor | undefined };
/** Attributes of a kernel: plain numbers, strings, booleans or arrays of them. */
export type KernelAttrs = { [name: string]: number | string | boolean | number[] | null };

/**
 * Backends that run a fused kernel from a {@link FusedKernel} body. `native` holds its tensors as
 * the cpu backend does, so it runs the same body as `cpu` unless the definition gives it a kernel
 * of its own ({@link KernelDefinition.backendKernels}).
 */
export type FusedBackend = 'cpu' | 'wasm' | 'native';
export const FUSED_BACKENDS: readonly FusedBackend[] = ['cpu', 'wasm', 'native'];

/**
 * How gradients of a fused kernel are computed: a hand-written function returning one thunk per
 * float input, or `'reference'` to differentiate the composed reference with tfjs autodiff.
 */
export type KernelGradient<I extends KernelInputs, A extends KernelAttrs> =
  | 'reference'
  | ((dys: tf.Tensor[], inputs: I, outputs: tf.Tensor[], attrs: A) => { [K in keyof I]?: tf.Tensor });

/** Everything that defines one kernel, in one place (guide: Writing a kernel). */
export interface KernelDefinition<I extends KernelInputs, A extends KernelAttrs> {
  /** PascalCase kernel name, unique across tfjs (e.g. `SelectiveScan`). */
  name: string;
  /** Input names in a fixed order; the order gradients and saved tensors use. */
  inputNames: readonly (keyof I & string)[];
  /** The same math from stock tfjs ops: fallback on every other backend, oracle in tests. */
  reference(inputs: I, attrs: A): tf.Tensor[];
  /** Fused body shared by the cpu and wasm kernels. */
  fused?: FusedKernel<I, A>;
  /** Backends the fused body is registered for (default every {@link FUSED_BACKENDS} entry). */
  fusedBackends?: readonly FusedBackend[];
  /**
   * Kernels of a backend's own that replace the fused body there (e.g. `native` calling
   * `@graniteflow/native`): each makes the kernel function, or returns null to keep the fused body.
   */
  backendKernels?: Partial<Record<FusedBackend, () => KernelFunc | null>>;
  /** Gradient of the fused kernel; omit for inference-only kernels (then backprop throws). */
  gradient?: KernelGradient<I, A>;
  /** Inputs that carry no gradient (indices, masks). */
  nonDifferentiable?: readonly (keyof I & string)[];
}

/** Which implementation {@link Kernel.run} uses. */
export type KernelMode = 'auto' | 'reference' | 'fused';

let globalMode: KernelMode = (() => {
  const env = environmentVariable('GRANITEFLOW_KERNELS');
  return env === 'reference' || env === 'fused' ? env : 'auto';
})();

/**
 * Forces every kernel to its reference (`'reference'`), to its fused body (`'fused'`, throws where
 * there is none), or lets each pick (`'auto'`, the default; `GRANITEFLOW_KERNELS` sets it too).
 * Returns the previous mode.
 */
export function setKernelMode(mode: KernelMode): KernelMode {
  const previous = globalMode;
  globalMode = mode;
  return previous;
}

/** The current kernel mode. */
export function kernelMode(): KernelMode {
  return globalMode;
}

/** Thrown when a kernel is asked for an implementation the active backend does not have. */
export class KernelError extends Error {
  override name = 'KernelError';
}

/** A defined kernel: run it, run its reference, ask which backends have it fused. */
export interface Kernel<I extends KernelInputs, A extends KernelAttrs> {
  readonly name: string;
  readonly definition: KernelDefinition<I, A>;
  /** Runs the fused kernel when the active backend has one (and the mode allows), else the reference. */
  run(inputs: I, attrs: A, mode?: KernelMode): tf.Tensor[];
  /** Runs the composed reference. */
  reference(inputs: I, attrs: A): tf.Tensor[];
  /** Runs the fused kernel; throws naming the kernel and backend when there is none. */
  fused(inputs: I, attrs: A): tf.Tensor[];
  /** True when a fused kernel is registered for `backend` (default: the active one). */
  hasFused(backend?: string): boolean;
  /** Registers the fused kernels and the gradient with tfjs. Idempotent and silent. */
  register(): void;
}

function gradientFromReference<I extends KernelInputs, A extends KernelAttrs>(
  def: KernelDefinition<I, A>,
): NonNullable<Exclude<KernelGradient<I, A>, 'reference'>> {
  return (dys, inputs, _outputs, attrs) => {
    const frozen = new Set<string>(def.nonDifferentiable ?? []);
    const names = def.inputNames.filter((n) => inputs[n] != null && !frozen.has(n) && inputs[n]!.dtype === 'float32');
    const grads = vjp(
      (...xs: tf.Tensor[]) => {
        const replaced = { ...inputs } as I;
        names.forEach((n, i) => ((replaced as KernelInputs)[n] = xs[i]));
        return def.reference(replaced, attrs);
      },
      names.map((n) => inputs[n] as tf.Tensor),
      dys,
    );
    const result: { [K in keyof I]?: tf.Tensor } = {};
    names.forEach((n, i) => (result[n] = grads[i]));
    return result;
  };
}

function registerGradientOnce<I extends KernelInputs, A extends KernelAttrs>(def: KernelDefinition<I, A>): void {
  if (def.gradient === undefined || tf.getGradient(def.name) != null) return;
  const grad = def.gradient === 'reference' ? gradientFromReference(def) : def.gradient;
  tf.registerGradient({
    kernelName: def.name,
    inputsToSave: [...def.inputNames],
    outputsToSave: [],
    gradFunc: (dy, saved, attrs) => {
      const present = new Set(presentInputNames(attrs));
      const inputs = {} as KernelInputs;
      def.inputNames.forEach((n, i) => {
        if (present.has(n)) inputs[n] = saved[i];
      });
      const dys = Array.isArray(dy) ? dy : [dy];
      const userAttrs = { ...attrs } as KernelAttrs;
      delete userAttrs[PRESENT_INPUTS_ATTR];
      const grads = grad(dys, inputs as I, [], userAttrs as A);
      const thunks: { [name: string]: () => tf.Tensor } = {};
      def.inputNames.forEach((n, i) => {
        const g = present.has(n) ? grads[n as keyof I] : undefined;
        // Inputs without a gradient (indices, masks, placeholders) get zeros so backprop can finish.
        // float32 whatever the input's dtype: tfjs rejects any other gradient dtype, and an int32
        // input (routing indices) is still on the tape when it was computed from a variable.
        thunks[n] = g != null ? () => g : () => tf.zeros(saved[i].shape, 'float32');
      });
      return thunks;
    },
  });
}

/**
 * Defines a kernel from its reference, its fused body and its gradient, and returns a handle that
 * runs it. Call {@link Kernel.register} (from the package's registration side-effect file) to make
 * the fused kernels and the gradient known to tfjs.
 *
 * @example
 * ```ts
 * const Square = defineKernel<{ x: tf.Tensor }, {}>({
 *   name: 'MySquare', inputNames: ['x'],
 *   reference: ({ x }) => [tf.mul(x, x)],
 *   fused: { outputs: ({ x }) => [x], compute: ({ x }, [y]) => { for (let i = 0; i < x.length; i++) y[i] = x[i] * x[i]; } },
 *   gradient: 'reference',
 * });
 * Square.register();
 * const [y] = Square.run({ x: tf.tensor([1, 2]) }, {});
 * ```
 */
export function defineKernel<I extends KernelInputs, A extends KernelAttrs>(def: KernelDefinition<I, A>): Kernel<I, A> {
  const fusedBackends = def.fused ? (def.fusedBackends ?? FUSED_BACKENDS) : [];

  const hasFused = (backend: string = tf.getBackend()) => def.fused !== undefined && fusedBackends.includes(backend as FusedBackend);

  const register = () => {
    if (def.fused) {
      for (const backendName of fusedBackends) {
        if (tf.getKernel(def.name, backendName) != null) continue;
        const kernelFunc =
          def.backendKernels?.[backendName]?.() ?? (backendName === 'wasm' ? wasmKernelFunc(def.fused) : cpuKernelFunc(def.fused));
        tf.registerKernel({ kernelName: def.name, backendName, kernelFunc });
      }
    }
    registerGradientOnce(def);
  };

  const fused = (inputs: I, attrs: A): tf.Tensor[] => {
    if (!hasFused()) {
      throw new KernelError(
        `Kernel ${def.name} has no fused implementation for backend "${tf.getBackend()}"` +
          (fusedBackends.length ? ` (fused on: ${fusedBackends.join(', ')}).` : '.'),
      );
    }
    register();
    const present = def.inputNames.filter((n) => inputs[n] != null);
    const placeholder = present.length < def.inputNames.length ? tf.zeros([0]) : null;
    const map: tf.NamedTensorMap = {};
    for (const n of def.inputNames) map[n] = inputs[n] ?? (placeholder as tf.Tensor);
    const allAttrs = { ...attrs, [PRESENT_INPUTS_ATTR]: present.join(',') } as unknown as tf.NamedAttrMap;
    try {
      const out = tf.engine().runKernel(def.name, map, allAttrs);
      return Array.isArray(out) ? out : [out as tf.Tensor];
    } finally {
      placeholder?.dispose();
    }
  };

  const reference = (inputs: I, attrs: A) => def.reference(inputs, attrs);

  const run = (inputs: I, attrs: A, mode: KernelMode = globalMode): tf.Tensor[] => {
    if (mode === 'reference') return reference(inputs, attrs);
    if (mode === 'fused' || hasFused()) return fused(inputs, attrs);
    return reference(inputs, attrs);
  };

  return { name: def.name, definition: def, run, reference, fused, hasFused, register };
}
