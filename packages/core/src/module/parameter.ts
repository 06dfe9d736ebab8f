import * as tf from '@tensorflow/tfjs-core';
import { tensorFromWriter } from '../io/tensor_from_writer';
import type { PackedFormat, WeightDtype } from '../packed/formats';
import { PackedTensor } from '../packed/packed_tensor';
import { decodeFloatsInto } from '../safetensors/dtypes';
import { constantInit, DEFAULT_INIT_STD, zerosInit, type Initializer } from './initializers';

/** How a parameter is held in memory relative to its checkpoint tensor. */
export type ParameterLayout = 'checkpoint' | 'transposed';

/** Options of {@link Parameter}. */
export interface ParameterOptions {
  /**
   * `'transposed'` keeps a 2-D weight as [in, out] in memory while its checkpoint shape stays
   * [out, in]. tfjs-wasm multiplies by a transposed operand 5–10× slower than by a plain one
   * (it re-transposes and re-packs the weight on every call), so Linear layers store weights the
   * way matMul wants them. Default `'checkpoint'`.
   */
  layout?: ParameterLayout;
}

/**
 * A named weight of a {@link Module}. Its `shape` is the checkpoint shape, fixed at construction,
 * so loading can check every tensor against it; `value` is the weight as held in memory (the
 * checkpoint layout unless the parameter was made with `layout: 'transposed'`), a `tf.Variable`,
 * so `tf.variableGrads` and tfjs optimizers train it in place: the stored tensor is the only copy.
 */
export class Parameter {
  private variable: tf.Variable | null;
  private packedValue: PackedTensor | null = null;
  private initial: () => tf.Tensor;
  private isTrainable = true;
  readonly layout: ParameterLayout;
  /** How Hugging Face initializes this weight (the module declaring it says), used by `Module.initialize`. */
  readonly initializer: Initializer;

  /**
   * @param shape the checkpoint shape of the weight
   * @param init the initial value in checkpoint layout: a tensor, a constant every element takes
   *   (default 0), or an {@link Initializer}. Constants and initializers allocate nothing until
   *   first read, so a model skeleton of any size costs nothing and needs no backend; an
   *   initializer also becomes {@link Parameter.initializer}.
   */
  constructor(
    readonly shape: readonly number[],
    init: tf.Tensor | number | Initializer = 0,
    options: ParameterOptions = {},
  ) {
    this.layout = options.layout ?? 'checkpoint';
    if (this.layout === 'transposed' && shape.length !== 2) {
      throw new RangeError(`Only 2-D parameters can be stored transposed, not shape [${shape}].`);
    }
    this.variable = null;
    this.initializer = init instanceof tf.Tensor ? zerosInit : typeof init === 'number' ? constantInit(init) : init;
    this.initial = () => this.initializer([...shape], { std: DEFAULT_INIT_STD });
    if (init instanceof tf.Tensor) this.assign(init);
  }

  private static checkShape(shape: readonly number[], t: tf.Tensor): void {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(`Parameter expects shape [${shape}], got [${t.shape}].`);
    }
  }

  /** Shape of {@link Parameter.value}: the checkpoint shape, reversed when stored transposed. */
  get storageShape(): number[] {
    return this.layout === 'transposed' ? [this.shape[1], this.shape[0]] : [...this.shape];
  }

  /**
   * The variable holding the weight in memory (see {@link ParameterOptions.layout}). A parameter
   * never assigned reads as its initial value.
   */
  get value(): tf.Variable {
    if (this.packedValue !== null) {
      throw new TypeError(
        `This [${this.shape}] weight is held packed as ${this.packedValue.format}: read it through \`packed\` ` +
          '(layers such as Linear and Embedding accept packed weights), or call `unpack()` first.',
      );
    }
    if (this.variable === null) this.assign(tf.tidy(this.initial));
    return this.variable!;
  }

  /**
   * Whether optimizers and `tf.variableGrads` update this weight (default true; see
   * `Module.freeze`). A packed weight is never trained, whatever this says.
   */
  get trainable(): boolean {
    return this.isTrainable;
  }

  set trainable(on: boolean) {
    this.isTrainable = on;
    if (this.variable !== null) this.variable.trainable = on;
  }

  /**
   * The value read from now on while nothing is assigned: `make` runs on first read. A weight
   * already holding a value keeps it.
   */
  setInitial(make: () => tf.Tensor): void {
    this.initial = make;
  }

  /** The weight packed in checkpoint layout, or null while it is held as a float32 tensor. */
  get packed(): PackedTensor | null {
    return this.packedValue;
  }

  /** `'f32'` for a float32 tensor, else the packed format. */
  get dtype(): WeightDtype {
    return this.packedValue?.format ?? 'f32';
  }

  /**
   * Holds the weight packed from now on (e.g. as loaded from a packed checkpoint). Takes ownership
   * of `packed`, whose shape must be the checkpoint shape, and disposes the float32 value if any.
   */
  assignPacked(packed: PackedTensor): void {
    if (packed.shape.length !== this.shape.length || packed.shape.some((d, i) => d !== this.shape[i])) {
      throw new RangeError(`Parameter expects shape [${this.shape}], got a packed [${packed.shape}].`);
    }
    this.disposeVariable();
    if (this.packedValue !== packed) this.packedValue?.dispose();
    this.packedValue = packed;
  }

  /** Packs the current value in `format` (quantizing it), releasing the float32 tensor. */
  pack(format: PackedFormat): void {
    if (this.packedValue?.format === format) return;
    const floats = this.checkpointValue();
    try {
      this.assignPacked(PackedTensor.fromTensor(format, floats));
    } finally {
      floats.dispose();
    }
  }

  /** Goes back to a float32 tensor (the packed values, dequantized). */
  unpack(): void {
    const packed = this.packedValue;
    if (packed === null) return;
    this.packedValue = null;
    this.assign(packed.dequantize());
    packed.dispose();
  }

  /** A new tensor in checkpoint layout (the caller owns it), e.g. for saving. */
  checkpointValue(): tf.Tensor {
    if (this.packedValue !== null) return this.packedValue.dequantize();
    const v = this.value;
    return this.layout === 'transposed' ? tf.transpose(v) : tf.clone(v);
  }

  /** True once a value has been assigned or read. */
  get isSet(): boolean {
    return this.variable !== null || this.packedValue !== null;
  }

  /** Number of scalars in the weight. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * Replaces the value with `t`, given in checkpoint layout, and disposes the previous one. Takes
   * ownership of `t` (a transposed parameter stores a transposed copy and disposes `t`).
   */
  assign(t: tf.Tensor): void {
    Parameter.checkShape(this.shape, t);
    this.dropPacked();
    const stored = this.layout === 'transposed' ? tf.transpose(t) : t;
    if (stored !== t) t.dispose();
    this.hold(stored);
  }

  /**
   * Makes `stored` (storage layout, owned) the value. An existing variable takes the new data, so
   * an optimizer holding it keeps training the same weight; `stored` itself is released, the
   * variable sharing its memory (no copy).
   */
  private hold(stored: tf.Tensor): void {
    if (stored === this.variable) return;
    // Another parameter's variable stays its owner's: this one holds its own handle on the data.
    const owned = stored instanceof tf.Variable ? tf.clone(stored) : stored;
    if (this.variable !== null) {
      this.variable.assign(owned);
    } else {
      this.variable = tf.variable(owned, this.isTrainable);
    }
    owned.dispose();
  }

  private disposeVariable(): void {
    this.variable?.dispose();
    this.variable = null;
  }

  /**
   * Replaces the value from a flat array in checkpoint layout (e.g. straight from a safetensors
   * reader). A transposed parameter is rearranged while being written into backend memory, which
   * is several times faster than a transpose on the wasm backend and never holds two copies there.
   */
  assignValues(data: Float32Array | Int32Array, dtype: 'float32' | 'int32' = 'float32'): void {
    if (data.length !== this.size) {
      throw new RangeError(`Parameter expects ${this.size} values for shape [${this.shape}], got ${data.length}.`);
    }
    if (this.layout !== 'transposed') {
      // Float data goes up as is: a same-dtype cast would still copy the whole tensor on wasm.
      const shape = this.shape as number[];
      this.assign(
        dtype === 'float32' ? tf.tensor(data, shape, 'float32') : tf.tidy(() => tf.cast(tf.tensor(data, shape, dtype), 'float32')),
      );
      return;
    }
    const floats = data instanceof Float32Array ? data : Float32Array.from(data);
    const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
    this.writeValues((out) => decodeFloatsInto('F32', bytes, out, [this.shape[0], this.shape[1]]));
  }

  /**
   * Replaces the value by writing it straight into backend memory: `write` receives the
   * storage-layout array ({@link Parameter.storageShape}) to fill (see `tensorFromWriter`).
   */
  writeValues(write: (out: Float32Array) => void): void {
    const t = tensorFromWriter(this.storageShape, write);
    this.dropPacked();
    this.hold(t);
  }

  private dropPacked(): void {
    this.packedValue?.dispose();
    this.packedValue = null;
  }

  dispose(): void {
    this.disposeVariable();
    this.dropPacked();
  }
}
