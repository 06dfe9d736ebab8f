import type { DataType } from '@tensorflow/tfjs-core';

/** The flat arrays tfjs backends store float32, int32 and bool tensors in. */
export type FlatArray = Float32Array | Int32Array | Uint8Array;

/** Shape and dtype of one tensor, as a fused kernel sees its inputs and declares its outputs. */
export interface TensorSpec {
  shape: number[];
  dtype: DataType;
}

/**
 * The backend-free body of a fused kernel. The same object drives the `cpu` kernel (arrays owned by
 * the cpu backend) and the `wasm` kernel (views of the wasm heap, so no copies in or out).
 *
 * `outputs` declares every output before any memory is touched: on wasm, allocating an output may
 * grow the heap and detach earlier views, so all outputs are allocated first, then viewed.
 */
export interface FusedKernel<I, A> {
  /** Output shapes and dtypes from the input shapes and the attrs. */
  outputs(inputs: { [K in keyof I]: TensorSpec }, attrs: A): TensorSpec[];
  /**
   * The math. `outputs` arrive zero-filled. Must not keep references to the arrays after it returns
   * (wasm views die when the heap grows).
   */
  compute(inputs: { [K in keyof I]: FlatArray }, outputs: FlatArray[], shapes: { [K in keyof I]: number[] }, attrs: A): void;
}
