import {
  SafetensorsError,
  decodeFloatsInto,
  dequantizeRowsInto,
  isFloatDtype,
  MappedCheckpoint,
  nativeAddon,
  packedRowBytes,
  PackedTensor,
  quantizeRowsInto,
  type Checkpoint,
  type Module,
  type PackedFormat,
  type Parameter,
  type SafetensorsTensorInfo,
  type WeightDtype,
} from '@graniteflow/core';

/** Progress of copying weights from a checkpoint into a model. */
export interface WeightsProgress {
  phase: 'weights';
  tensor: string;
  loadedTensors: number;
  totalTensors: number;
  loadedBytes: number;
  totalBytes: number;
}

/** Options of {@link loadWeights}. */
export interface LoadWeightsOptions {
  onProgress?: (p: WeightsProgress) => void;
  signal?: AbortSignal;
  /** How to hold each parameter (from `planWeightDtypes`); absent ones are float32. */
  dtypes?: ReadonlyMap<string, WeightDtype>;
  /**
   * The most float32 a packed weight is decoded into at a time while it is quantized (default
   * {@link QUANTIZE_CHUNK_BYTES}; at least one row is always decoded).
   */
  chunkBytes?: number;
}

/** 8 MiB of float32 at a time: large enough that quantizing runs at full speed, small beside any model. */
export const QUANTIZE_CHUNK_BYTES = 8 * 1024 * 1024;

/** The shape the model sees of a checkpoint tensor: a packed weight's logical shape, else its stored one. */
export function logicalShape(info: SafetensorsTensorInfo): readonly number[] {
  return info.packed?.shape ?? info.shape;
}

/**
 * Loads a checkpoint into a model strictly: every name and shape is checked from the headers first
 * (missing, unexpected and mis-shaped tensors reported together, by logical shape, nothing
 * loaded), then tensors are read one at a time. A float32 parameter is widened straight into
 * backend memory; a packed one (`options.dtypes`) is read and decoded a few rows at a time and each
 * chunk quantized straight into its packed bytes, so neither the float32 copy of a packed weight
 * nor its checkpoint bytes are ever held whole. Peak extra memory: one float32 tensor's checkpoint
 * bytes, or one chunk.
 *
 * A packed checkpoint (the output of `quantizeCheckpoint` / `graniteflow quantize`) is best given
 * as a {@link MappedCheckpoint}: a weight held in the format it is stored in is then a view of the
 * mapping on `cpu` / `native` (nothing copied; see `openMappedCheckpoint`), else its bytes are read
 * straight into backend memory. A packed weight held in another dtype is dequantized (and, for a
 * packed dtype, quantized again) a chunk at a time.
 *
 * @param keyMap parameter name → checkpoint key, after checkpoint surgery
 */
export function loadWeights(
  model: Module,
  source: Checkpoint | MappedCheckpoint,
  keyMap: Map<string, string>,
  options: LoadWeightsOptions = {},
): void {
  const mapped = source instanceof MappedCheckpoint ? source : null;
  const checkpoint = mapped?.checkpoint ?? (source as Checkpoint);
  const shapes = new Map<string, readonly number[]>();
  for (const [param, key] of keyMap) shapes.set(param, logicalShape(checkpoint.info(key)));
  model.checkStateDictShapes(shapes, { source: checkpoint.dir });
  const params = [...model.namedParameters()];
  const totalBytes = params.reduce((n, [name]) => n + checkpoint.info(keyMap.get(name)!).byteLength, 0);
  const chunkFloats = Math.max(1, Math.floor((options.chunkBytes ?? QUANTIZE_CHUNK_BYTES) / 4));
  const bytesOf = (key: string) => mapped?.bytes(key) ?? checkpoint.readBytes(key);
  let loadedBytes = 0;
  params.forEach(([name, param], i) => {
    options.signal?.throwIfAborted();
    const key = keyMap.get(name)!;
    const info = checkpoint.info(key);
    const held = options.dtypes?.get(name) ?? 'f32';
    const stored = info.dtype;
    const transposeFrom = param.layout === 'transposed' ? ([param.shape[0], param.shape[1]] as const) : undefined;
    if (info.packed !== undefined && held === info.packed.format) {
      // Stored as held: the bytes are the weight (a view of the mapping where one exists).
      const { format, shape } = info.packed;
      param.assignPacked(
        mapped ? mapped.packedTensor(key) : PackedTensor.fromWriter(format, shape, (dst) => checkpoint.readBytesInto(key, dst)),
      );
    } else if (held !== 'f32') {
      // Packed rows are the checkpoint's rows ([out, in]): no transposition, whatever the layout.
      param.assignPacked(quantizeStreaming(checkpoint, info, held, chunkFloats));
    } else if (info.packed !== undefined) {
      const { format, shape } = info.packed;
      const cols = shape[shape.length - 1];
      const floats = new Float32Array(param.size);
      dequantizeRowsInto(format, bytesOf(key), cols, 0, floats.length / cols, floats);
      param.writeValues((out) => decodeFloatsInto('F32', new Uint8Array(floats.buffer), out, transposeFrom));
    } else if (isFloatDtype(stored)) {
      // Decoded (and transposed, for Linear weights) straight into backend memory in one pass.
      const bytes = bytesOf(key);
      param.writeValues((out) => decodeFloatsInto(stored, bytes, out, transposeFrom));
    } else {
      assignDecoded(param, checkpoint, info);
    }
    loadedBytes += info.byteLength;
    options.onProgress?.({
      phase: 'weights',
      tensor: key,
      loadedTensors: i + 1,
      totalTensors: params.length,
      loadedBytes,
      totalBytes,
    });
  });
}

function assignDecoded(param: Parameter, checkpoint: Checkpoint, info: SafetensorsTensorInfo): void {
  const decoded = checkpoint.read(info.name);
  if (decoded.dtype === 'bool') {
    throw new SafetensorsError(checkpoint.dir, `is BOOL; model weights must be floating point`, info.name);
  }
  param.assignValues(decoded.data, decoded.dtype);
}

/** `rows` × `cols` float32 values → `format` bytes: the native addon's threads when it loaded, else JS (bit for bit the same). */
function quantizeChunk(format: PackedFormat, src: Float32Array, rows: number, cols: number, dst: Uint8Array): void {
  const native = nativeAddon();
  if (native) native.quantize(format, src, rows, cols, dst);
  else quantizeRowsInto(format, src, rows, cols, dst);
}

/**
 * A checkpoint tensor packed as `format`: rows read and decoded into one reused float32 chunk of at
 * most `chunkFloats` values (or one row) and quantized into the packed tensor's backend memory.
 */
function quantizeStreaming(checkpoint: Checkpoint, info: SafetensorsTensorInfo, format: PackedFormat, chunkFloats: number): PackedTensor {
  const shape = logicalShape(info);
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const rowBytes = packedRowBytes(format, cols);
  const rowsPerChunk = Math.max(1, Math.min(rows, Math.floor(chunkFloats / cols)));
  const dtype = info.dtype;
  let readRows: (first: number, count: number, out: Float32Array) => void;
  if (info.packed !== undefined) {
    // Repacking: the stored rows dequantized, a chunk at a time, then quantized as asked.
    const from = info.packed.format;
    const storedRowBytes = packedRowBytes(from, cols);
    const raw = new Uint8Array(rowsPerChunk * storedRowBytes);
    readRows = (first, count, out) => {
      const bytes = raw.subarray(0, count * storedRowBytes);
      checkpoint.readBytesInto(info.name, bytes, first * storedRowBytes);
      dequantizeRowsInto(from, bytes, cols, 0, count, out);
    };
  } else if (isFloatDtype(dtype)) {
    // The checkpoint's bytes are read a chunk at a time too, into one reused buffer.
    const elementBytes = info.byteLength / (rows * cols);
    const raw = new Uint8Array(rowsPerChunk * cols * elementBytes);
    readRows = (first, count, out) => {
      const bytes = raw.subarray(0, count * cols * elementBytes);
      checkpoint.readBytesInto(info.name, bytes, first * cols * elementBytes);
      decodeFloatsInto(dtype, bytes, out);
    };
  } else {
    // Integer weights (no released checkpoint has them) are small enough to widen whole.
    const decoded = checkpoint.read(info.name);
    if (decoded.dtype === 'bool') throw new SafetensorsError(checkpoint.dir, `is BOOL; model weights must be floating point`, info.name);
    readRows = (first, count, out) => out.set(decoded.data.subarray(first * cols, (first + count) * cols));
  }
  const scratch = new Float32Array(rowsPerChunk * cols);
  return PackedTensor.fromWriter(format, shape, (packed) => {
    for (let first = 0; first < rows; first += rowsPerChunk) {
      const count = Math.min(rowsPerChunk, rows - first);
      const floats = scratch.subarray(0, count * cols);
      readRows(first, count, floats);
      quantizeChunk(format, floats, count, cols, packed.subarray(first * rowBytes, (first + count) * rowBytes));
    }
  });
}
