/**
 * Backends, kernel definition, the Module tree, generic layers and checkpoint I/O: the parts of
 * graniteflow that know nothing of any model family.
 * @module core
 */
export {
  activeBackend,
  availableBackends,
  BACKEND_PACKAGES,
  BackendError,
  defaultBackendName,
  initBackend,
  isBackendAvailable,
  type BackendName,
} from './backends';
export {
  defineKernel,
  FUSED_BACKENDS,
  KernelError,
  kernelMode,
  setKernelMode,
  type FusedBackend,
  type Kernel,
  type KernelAttrs,
  type KernelDefinition,
  type KernelGradient,
  type KernelInputs,
  type KernelMode,
} from './kernels/define_kernel';
export type { FlatArray, FusedKernel, TensorSpec } from './kernels/fused_kernel';
export { vjp } from './kernels/vjp';
export { nativeAddon, nativeUnavailableReason, type NativeAddon } from './native/native_addon';
export {
  NATIVE_BACKEND,
  nativeKernel,
  recordingGradients,
  registerNativeBackend,
  type NativeInput,
  type NativeOutput,
} from './native/native_backend';
export { heapScratch, reserveHeapScratch, wasmHeap, type WasmHeap } from './kernels/wasm_heap';
export { unsharedFloat32Memory } from './kernels/tensor_memory';
export {
  CORE_SIMD_MODULES,
  countSimdCall,
  simdCounters,
  simdInstance,
  simdKernels,
  simdModulePath,
  type SimdKernels,
  type SimdModuleSource,
} from './kernels/simd_module';
export { isSimdEnabled, setSimdEnabled } from './kernels/simd_switch';
export { webAssemblyApi, type WasmMemory, type WebAssemblyApi } from './kernels/webassembly_api';
export {
  constantInit,
  DEFAULT_INIT_STD,
  normalInit,
  onesInit,
  parameterSeed,
  zerosInit,
  type InitContext,
  type Initializer,
} from './module/initializers';
export {
  Module,
  type InitializeOptions,
  type InitScheme,
  type LoadStateDictOptions,
  type ParameterPattern,
  type StateDict,
} from './module/module';
export { Parameter, type ParameterLayout, type ParameterOptions } from './module/parameter';
export { StateDictError, type ShapeMismatch } from './module/state_dict_error';
export { ShapeError } from './shape_error';
export {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  DEFAULT_LORA_EXPERT_TARGETS,
  DEFAULT_LORA_TARGETS,
  LoraAdapter,
  LoraAdapters,
  type LoraOptions,
} from './nn/lora';
export { ExpertLoraAdapter, isExpertAdaptable, LoraFactor, type ExpertAdaptable } from './nn/expert_lora';
export { Linear, type LinearOptions } from './nn/linear';
export { Embedding, type EmbeddingOptions } from './nn/embedding';
export { RMSNorm, rmsNorm } from './nn/rms_norm';
export { attention, type AttentionOptions } from './nn/attention';
export { Attention, attentionReference, type AttentionAttrs, type AttentionInputs } from './nn/attention_kernel';
export { RmsNorm, rmsNormReference, type RmsNormAttrs, type RmsNormInputs } from './nn/rms_norm_kernel';
export {
  blockWeights,
  bytesPerWeight,
  canPackRows,
  isPackedFormat,
  isWeightDtype,
  PACKED_FORMATS,
  packedByteLength,
  packedRowBytes,
  QUANT_BLOCK,
  WEIGHT_DTYPES,
  type PackedFormat,
  type WeightDtype,
} from './packed/formats';
export { dequantizeRowsInto, quantizeRows, quantizeRowsInto } from './packed/quantize';
export { PackedTensor, type PackedFromBytesOptions } from './packed/packed_tensor';
export { interleavesHere } from './packed/interleaved_layout';
export { PackedMatMul, packedMatMul, type PackedMatMulAttrs, type PackedMatMulInputs } from './packed/packed_matmul';
export { PackedGather, packedGather, type PackedGatherAttrs, type PackedGatherInputs } from './packed/packed_gather';
export { SafetensorsError } from './safetensors/errors';
export {
  DTYPE_BYTES,
  decodeFloatsInto,
  floatToBf16,
  isFloatDtype,
  floatToHalf,
  halfToFloat,
  type DecodedTensor,
  type FloatDtype,
  type SafetensorsDtype,
} from './safetensors/dtypes';
export { SafetensorsFile, type SafetensorsTensorInfo } from './safetensors/reader';
export { writeSafetensors, type WritableTensor, type WriteSafetensorsOptions } from './safetensors/writer';
export { Checkpoint, INDEX_FILE, SINGLE_FILE } from './safetensors/checkpoint';
export {
  PACKED_DTYPE_PREFIX,
  PACKED_LAYOUT_VERSION,
  PACKED_MARKER_KEY,
  PACKED_SHAPE_PREFIX,
  packedStorage,
  type PackedLayout,
} from './safetensors/packed_metadata';
export { writeSafetensorsStream, type StreamedTensor, type StreamWriteOptions } from './safetensors/stream_writer';
export {
  DEFAULT_MAX_SHARD_BYTES,
  writePackedCheckpoint,
  writePackedSafetensors,
  type PackedCheckpointTensor,
  type WritePackedCheckpointOptions,
  type WritePackedOptions,
} from './packed/packed_checkpoint';
export {
  MappedCheckpoint,
  openMappedCheckpoint,
  type MappedLoadStats,
  type MmapAdvice,
  type OpenMappedCheckpointOptions,
} from './packed/packed_checkpoint_mapped';
export {
  planQuantization,
  quantizeCheckpoint,
  type QuantizationPlan,
  type QuantizeCheckpointOptions,
  type QuantizeCheckpointResult,
  type WeightPolicy,
} from './packed/packed_checkpoint_quantize';
export {
  GGML_TYPES,
  ggmlByteLength,
  GGUF_DEFAULT_ALIGNMENT,
  GgufError,
  ggufValue,
  isGgmlType,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
} from './gguf/gguf_format';
export { writeGguf, type GgufMetadata, type GgufTensor, type GgufTensorSink, type WriteGgufOptions } from './gguf/gguf_writer';
export { readGgufHeader, readGgufTensorBytes, type GgufHeader, type GgufTensorInfo } from './gguf/gguf_reader';
export { encodeNpy, readNpy, writeNpy, type NpyArray } from './io/npy';
export { jsonErrorDetail, previewJson } from './io/json_preview';
export { FileKindError, openRegularFile, pathEntryExists, readRegularFile, readRegularFileAsync } from './io/regular_file';
export { tensorFromWriter } from './io/tensor_from_writer';
export { formatTable, measure, type Timing } from './benchmark';
