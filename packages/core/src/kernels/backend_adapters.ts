import type { DataType, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { FlatArray, FusedKernel, TensorSpec } from './fused_kernel';
import { presentInputNames } from './present_inputs';

/** What a fused kernel needs of the cpu backend (`MathBackendCPU`, which `native` also runs on). */
export interface CpuBackendLike {
  data: { get(dataId: object): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: DataType, values: FlatArray): TensorInfo;
}

/**
 * A cpu-backend tensor's values in the array type of its dtype. tfjs' cpu Cast shares an int32
 * tensor's Int32Array when casting it to float32 (the cast loses nothing), so a float32 tensor
 * there may hold one; kernels read float32 inputs as Float32Array, so it is converted (a copy).
 */
export function valuesOfDtype(dtype: DataType, values: FlatArray): FlatArray {
  return dtype === 'float32' && !(values instanceof Float32Array) ? Float32Array.from(values) : values;
}

/** What a fused kernel needs of the wasm backend (`BackendWasm`). */
export interface WasmBackendLike {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): FlatArray;
}

function sizeOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function allocate(spec: TensorSpec): FlatArray {
  const n = sizeOf(spec.shape);
  if (spec.dtype === 'float32') return new Float32Array(n);
  if (spec.dtype === 'int32') return new Int32Array(n);
  if (spec.dtype === 'bool') return new Uint8Array(n);
  throw new TypeError(`Fused kernels support float32, int32 and bool outputs, not ${spec.dtype}.`);
}

type Named<T> = { [name: string]: T };

/** The inputs the caller really passed (absent optional inputs arrive as placeholders). */
function presentOnly(inputs: Named<TensorInfo>, attrs: object | undefined): Named<TensorInfo> {
  const present = presentInputNames((attrs ?? {}) as Named<unknown>);
  const out: Named<TensorInfo> = {};
  for (const n of present) out[n] = inputs[n];
  return out;
}

function specsOf(inputs: Named<TensorInfo>): Named<TensorSpec> {
  const specs: Named<TensorSpec> = {};
  for (const [k, t] of Object.entries(inputs)) specs[k] = { shape: t.shape, dtype: t.dtype };
  return specs;
}

function shapesOf(inputs: Named<TensorInfo>): Named<number[]> {
  const shapes: Named<number[]> = {};
  for (const [k, t] of Object.entries(inputs)) shapes[k] = t.shape;
  return shapes;
}

/** Wraps a fused body as a `cpu` kernel: reads the backend's arrays, hands new arrays back. */
export function cpuKernelFunc<I, A>(body: FusedKernel<I, A>): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const cpu = backend as unknown as CpuBackendLike;
    const named = presentOnly(inputs as Named<TensorInfo>, attrs);
    const a = attrs as unknown as A;
    const outSpecs = body.outputs(specsOf(named) as { [K in keyof I]: TensorSpec }, a);
    const arrays: Named<FlatArray> = {};
    for (const [k, t] of Object.entries(named)) arrays[k] = valuesOfDtype(t.dtype, cpu.data.get(t.dataId).values as FlatArray);
    const outs = outSpecs.map(allocate);
    body.compute(arrays as { [K in keyof I]: FlatArray }, outs, shapesOf(named) as { [K in keyof I]: number[] }, a);
    return outs.map((o, i) => cpu.makeTensorInfo(outSpecs[i].shape, outSpecs[i].dtype, o));
  };
}

/**
 * Wraps a fused body as a `wasm` kernel working in place on the wasm heap: outputs are allocated
 * by the backend first (allocation can grow the heap and detach views), then every input and
 * output is viewed without copying.
 */
export function wasmKernelFunc<I, A>(body: FusedKernel<I, A>): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const wasm = backend as unknown as WasmBackendLike;
    const named = presentOnly(inputs as Named<TensorInfo>, attrs);
    const a = attrs as unknown as A;
    const outSpecs = body.outputs(specsOf(named) as { [K in keyof I]: TensorSpec }, a);
    const outInfos = outSpecs.map((s) => wasm.makeOutput(s.shape, s.dtype));
    const arrays: Named<FlatArray> = {};
    for (const [k, t] of Object.entries(named)) arrays[k] = wasm.typedArrayFromHeap(t);
    const outs = outInfos.map((info) => wasm.typedArrayFromHeap(info));
    for (const o of outs) o.fill(0);
    body.compute(arrays as { [K in keyof I]: FlatArray }, outs, shapesOf(named) as { [K in keyof I]: number[] }, a);
    return outInfos;
  };
}
