/**
 * Loading a checkpoint (packed or not) by memory-mapping its files: on backends whose tensors live
 * in JavaScript memory (`cpu`, `native`) packed weights and aligned float32 tensors become tensors
 * over views of the mapping, so their bytes are never copied into the JS heap, and the kernel reads
 * them from the page cache on first use.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tensorFromWriter } from '../io/tensor_from_writer';
import { nativeAddon, nativeUnavailableReason, type NativeAddon } from '../native/native_addon';
import { Checkpoint } from '../safetensors/checkpoint';
import { decodeFloatsInto, isFloatDtype, LITTLE_ENDIAN } from '../safetensors/dtypes';
import { SafetensorsError } from '../safetensors/errors';
import type { SafetensorsTensorInfo } from '../safetensors/reader';
import { PackedTensor } from './packed_tensor';

/** The madvise hint for a mapping. */
export type MmapAdvice = 'normal' | 'sequential' | 'random' | 'willneed';

/** Options of {@link openMappedCheckpoint}. */
export interface OpenMappedCheckpointOptions {
  /** `false` reads every tensor instead (a copy), as happens anyway where mapping cannot help. Default true. */
  map?: boolean;
  /** Hint for each mapping; default `'willneed'` (read-ahead of all of it: loading touches every weight). */
  advice?: MmapAdvice;
  /**
   * The largest single mapping, default 4 GiB (the largest ArrayBuffer Node 20 makes). A file larger
   * than this is mapped in several windows, each starting at a tensor; a tensor larger than this is read.
   */
  maxMappingBytes?: number;
}

/** How the tensors handed out so far were placed. */
export interface MappedLoadStats {
  /** Tensors whose storage is a view of a mapping: nothing copied. */
  inPlaceTensors: number;
  inPlaceBytes: number;
  /** Tensors copied: read from disk (nothing mapped), decoded (BF16 / F16 → float32) or not 4-byte aligned. */
  copiedTensors: number;
  copiedBytes: number;
}

/** Mappings start on a multiple of this, so a view's offset in its mapping is congruent to its address. */
const WINDOW_ALIGN = 4096;
const DEFAULT_MAX_MAPPING = 2 ** 32;

interface Window {
  buffer: ArrayBuffer;
  /** File offset of the buffer's byte 0. */
  start: number;
}

/**
 * A checkpoint folder opened for loading by memory map (see {@link openMappedCheckpoint}). Every
 * method gives the same values whether the files are mapped or read; only where the bytes live
 * differs. Tensors handed out are owned by the caller; they stay valid after {@link close} (a
 * mapping lives until the last view of it is collected).
 */
export class MappedCheckpoint {
  private windows: Map<string, Window> | null;
  private readonly counts: MappedLoadStats = { inPlaceTensors: 0, inPlaceBytes: 0, copiedTensors: 0, copiedBytes: 0 };

  private constructor(
    /** The headers and positional reads behind the mappings. */
    readonly checkpoint: Checkpoint,
    windows: Map<string, Window> | null,
    /** Why nothing is mapped; undefined when the files are mapped. */
    readonly notMappedReason: string | undefined,
  ) {
    this.windows = windows;
  }

  /** See {@link openMappedCheckpoint}. */
  static open(dir: string, options: OpenMappedCheckpointOptions = {}): MappedCheckpoint {
    const checkpoint = Checkpoint.open(dir);
    try {
      const addon = options.map === false ? null : nativeAddon();
      const backend = tf.getBackend();
      // A backend with its own memory is the reason whether or not the addon loads: name it first.
      const reason =
        options.map === false
          ? 'mapping was switched off (map: false)'
          : backend !== 'cpu' && backend !== 'native'
            ? `the ${backend} backend keeps tensors in its own memory, so they are copied there anyway`
            : addon === null
              ? `the native addon is unavailable (${nativeUnavailableReason()})`
              : undefined;
      const windows = reason === undefined ? mapWindows(addon!, checkpoint, options) : null;
      return new MappedCheckpoint(checkpoint, windows, reason);
    } catch (err) {
      checkpoint.close();
      throw err;
    }
  }

  /** Whether the files are memory-mapped (else every tensor is read from disk when asked for). */
  get mapped(): boolean {
    return this.notMappedReason === undefined;
  }

  get dir(): string {
    return this.checkpoint.dir;
  }

  names(): string[] {
    return this.checkpoint.names();
  }

  has(name: string): boolean {
    return this.checkpoint.has(name);
  }

  /** Dtype, stored and (for packed weights) logical shape, file and byte range of a tensor. */
  info(name: string): SafetensorsTensorInfo {
    return this.checkpoint.info(name);
  }

  /** Counts of the tensors handed out so far, in place and copied. */
  stats(): MappedLoadStats {
    return { ...this.counts };
  }

  /**
   * The tensor's stored bytes as a view of its mapping (nothing copied), or null when it is not
   * mapped. The pages are read-only: writing into the view crashes the process.
   */
  mappedBytes(name: string): Uint8Array | null {
    const info = this.info(name);
    if (this.windows === null) return null;
    const window = this.windows.get(name);
    if (window === undefined) return info.byteLength === 0 ? new Uint8Array(0) : null;
    return new Uint8Array(window.buffer, info.offset - window.start, info.byteLength);
  }

  /** The tensor's stored bytes: a read-only view of the mapping when mapped, else read from disk now. */
  bytes(name: string): Uint8Array {
    return this.mappedBytes(name) ?? this.checkpoint.readBytes(name);
  }

  /**
   * A packed weight (see the core README, "Packed checkpoints") as a {@link PackedTensor} of its
   * logical shape. Mapped, on `cpu` / `native`, its storage is the mapping itself when its bytes
   * start 4-byte aligned and fill whole words (always, for files graniteflow writes); otherwise
   * the bytes are read straight into backend memory.
   */
  packedTensor(name: string): PackedTensor {
    const info = this.info(name);
    if (info.packed === undefined) {
      throw new SafetensorsError(
        info.file,
        `is a plain ${info.dtype} tensor, not a packed weight (no graniteflow.dtype entry in __metadata__): load it with floatTensor()`,
        name,
      );
    }
    const { format, shape } = info.packed;
    const view = this.mappedBytes(name);
    if (view !== null && view.byteOffset % 4 === 0 && view.byteLength % 4 === 0 && tf.getBackend() !== 'wasm') {
      this.count(true, info.byteLength);
      return PackedTensor.fromBytes(format, shape, view);
    }
    this.count(false, info.byteLength);
    if (view !== null) return PackedTensor.fromBytes(format, shape, view);
    return PackedTensor.fromWriter(format, shape, (dst) => this.checkpoint.readBytesInto(name, dst));
  }

  /**
   * A plain tensor as a tfjs tensor (the caller owns it): float dtypes as float32, integers as
   * int32, BOOL as bool. Mapped, on `cpu` / `native`, an F32 tensor starting 4-byte aligned is a
   * tensor over the mapping (read-only memory: writing into its `dataSync()` array crashes the
   * process); BF16 and F16 are widened into new memory, from the mapping instead of a read.
   */
  floatTensor(name: string): tf.Tensor {
    const info = this.info(name);
    if (info.packed !== undefined) {
      throw new SafetensorsError(info.file, `is a weight packed as ${info.packed.format}: load it with packedTensor()`, name);
    }
    const { dtype, shape } = info;
    if (!isFloatDtype(dtype)) {
      this.count(false, info.byteLength);
      return this.checkpoint.readTensor(name);
    }
    const view = this.mappedBytes(name);
    if (view !== null && dtype === 'F32' && LITTLE_ENDIAN && view.byteOffset % 4 === 0 && tf.getBackend() !== 'wasm') {
      this.count(true, info.byteLength);
      return tf.tensor(new Float32Array(view.buffer, view.byteOffset, view.byteLength / 4), shape, 'float32');
    }
    this.count(false, info.byteLength);
    return tensorFromWriter(shape, (out) => {
      if (view === null && dtype === 'F32' && LITTLE_ENDIAN) {
        this.checkpoint.readBytesInto(name, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      } else {
        decodeFloatsInto(dtype, view ?? this.checkpoint.readBytes(name), out);
      }
    });
  }

  /** A tensor as the file holds it: packed weights as {@link PackedTensor}, the rest as tfjs tensors. */
  load(name: string): PackedTensor | tf.Tensor {
    return this.info(name).packed !== undefined ? this.packedTensor(name) : this.floatTensor(name);
  }

  /** Closes the files. Tensors handed out stay valid; a mapping is released when no view of it is left. */
  close(): void {
    this.checkpoint.close();
    this.windows = this.windows === null ? null : new Map();
  }

  private count(inPlace: boolean, bytes: number): void {
    if (inPlace) {
      this.counts.inPlaceTensors++;
      this.counts.inPlaceBytes += bytes;
    } else {
      this.counts.copiedTensors++;
      this.counts.copiedBytes += bytes;
    }
  }
}

/**
 * Maps every file of `checkpoint` once, as few windows of at most `maxMappingBytes` as cover its
 * tensors (one per file, for files up to that size), and returns each tensor's window.
 */
function mapWindows(addon: NativeAddon, checkpoint: Checkpoint, options: OpenMappedCheckpointOptions): Map<string, Window> {
  const maxMapping = options.maxMappingBytes ?? DEFAULT_MAX_MAPPING;
  if (!Number.isSafeInteger(maxMapping) || maxMapping < 1 || maxMapping > DEFAULT_MAX_MAPPING) {
    throw new RangeError(`maxMappingBytes must be an integer in [1, ${DEFAULT_MAX_MAPPING}], got ${maxMapping}.`);
  }
  const advice = options.advice ?? 'willneed';
  const byFile = new Map<string, SafetensorsTensorInfo[]>();
  for (const name of checkpoint.names()) {
    const info = checkpoint.info(name);
    if (info.byteLength === 0) continue;
    let list = byFile.get(info.file);
    if (list === undefined) byFile.set(info.file, (list = []));
    list.push(info);
  }
  const windows = new Map<string, Window>();
  for (const [file, infos] of byFile) {
    infos.sort((a, b) => a.offset - b.offset);
    let group: SafetensorsTensorInfo[] = [];
    let start = 0;
    const flush = () => {
      if (group.length === 0) return;
      const last = group[group.length - 1];
      let buffer: ArrayBuffer;
      try {
        buffer = addon.mmapFile(file, { offset: start, length: last.offset + last.byteLength - start, advice });
      } catch (err) {
        throw new SafetensorsError(file, `cannot memory-map the file: ${(err as Error).message}`);
      }
      for (const info of group) windows.set(info.name, { buffer, start });
      group = [];
    };
    for (const info of infos) {
      const ownStart = info.offset - (info.offset % WINDOW_ALIGN);
      if (info.offset + info.byteLength - ownStart > maxMapping) {
        flush(); // too large for any one mapping: read when asked for
        continue;
      }
      if (group.length > 0 && info.offset + info.byteLength - start > maxMapping) flush();
      if (group.length === 0) start = ownStart;
      group.push(info);
    }
    flush();
  }
  return windows;
}

/**
 * Opens a checkpoint folder (`model.safetensors` or sharded, packed or not) for loading by memory
 * map. When `@graniteflow/native` loads and the backend is `cpu` or `native`, every file is mapped
 * once (read-only, outside the JS heap) and packed weights and aligned F32 tensors are handed out
 * as tensors over views of the mapping: nothing is copied, and the page cache is the only copy of
 * the weights. Otherwise (no addon, `GRANITEFLOW_NATIVE=0`, the `wasm` backend, `map: false`)
 * tensors are read from disk when asked for, with the same values; `notMappedReason` says why.
 *
 * @example
 * const ckpt = openMappedCheckpoint('./granite-4.0-h-micro-q4_0');
 * const w = ckpt.packedTensor('model.layers.0.mamba.in_proj.weight'); // PackedTensor q4_0 [8192, 2048]
 */
export function openMappedCheckpoint(dir: string, options: OpenMappedCheckpointOptions = {}): MappedCheckpoint {
  return MappedCheckpoint.open(dir, options);
}
