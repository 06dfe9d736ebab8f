import { SafetensorsError, decodeFloatsInto, isFloatDtype, type Checkpoint, type Module } from '@graniteflow/core';

/** Progress of copying weights from a checkpoint into a model. */
export interface WeightsProgress {
  phase: 'weights';
  tensor: string;
  loadedTensors: number;
  totalTensors: number;
  loadedBytes: number;
  totalBytes: number;
}

/**
 * Loads a checkpoint into a model strictly: every name and shape is checked from the headers first
 * (missing, unexpected and mis-shaped tensors reported together, nothing loaded), then tensors are
 * read one at a time, widened to float32 and assigned, so peak extra memory is one tensor.
 *
 * @param keyMap parameter name → checkpoint key, after checkpoint surgery
 */
export function loadWeights(
  model: Module,
  checkpoint: Checkpoint,
  keyMap: Map<string, string>,
  options: { onProgress?: (p: WeightsProgress) => void; signal?: AbortSignal } = {},
): void {
  const shapes = new Map<string, readonly number[]>();
  for (const [param, key] of keyMap) shapes.set(param, checkpoint.info(key).shape);
  model.checkStateDictShapes(shapes, { source: checkpoint.dir });
  const params = [...model.namedParameters()];
  const totalBytes = params.reduce((n, [name]) => n + checkpoint.info(keyMap.get(name)!).byteLength, 0);
  let loadedBytes = 0;
  params.forEach(([name, param], i) => {
    options.signal?.throwIfAborted();
    const key = keyMap.get(name)!;
    const { dtype } = checkpoint.info(key);
    if (isFloatDtype(dtype)) {
      // Decoded (and transposed, for Linear weights) straight into backend memory in one pass.
      const bytes = checkpoint.readBytes(key);
      const transposeFrom = param.layout === 'transposed' ? ([param.shape[0], param.shape[1]] as const) : undefined;
      param.writeValues((out) => decodeFloatsInto(dtype, bytes, out, transposeFrom));
    } else {
      const decoded = checkpoint.read(key);
      if (decoded.dtype === 'bool') {
        throw new SafetensorsError(checkpoint.dir, `is BOOL; model weights must be floating point`, key);
      }
      param.assignValues(decoded.data, decoded.dtype);
    }
    loadedBytes += checkpoint.info(key).byteLength;
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
