import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { jsonErrorDetail, previewJson } from '../io/json_preview';
import { FileKindError, pathEntryExists, readRegularFile } from '../io/regular_file';
import { quotedName, SafetensorsError } from './errors';
import { SafetensorsFile, type SafetensorsTensorInfo } from './reader';
import type { DecodedTensor } from './dtypes';

/** File names of a Hugging Face checkpoint's weights. */
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/**
 * The weights of a Hugging Face checkpoint folder: a single `model.safetensors` or shards listed in
 * `model.safetensors.index.json`. Tensors are read on demand, one at a time.
 */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: Map<string, SafetensorsFile>,
    private readonly location: Map<string, SafetensorsFile>,
  ) {}

  /** Opens the weights of a folder, validating every header and the index. */
  static open(dir: string): Checkpoint {
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    const files = new Map<string, SafetensorsFile>();
    const location = new Map<string, SafetensorsFile>();
    try {
      // lstat, not existsSync: a broken link or a link loop is reported for what it is, not as absent.
      if (pathEntryExists(indexPath)) {
        const weightMap = Checkpoint.readIndex(indexPath);
        for (const [name, file] of Object.entries(weightMap)) {
          let shard = files.get(file);
          if (shard === undefined) {
            const shardPath = path.join(dir, file);
            if (path.dirname(path.resolve(shardPath)) !== path.resolve(dir)) {
              throw new SafetensorsError(indexPath, `shard ${quotedName(file)} is outside the checkpoint folder`, name);
            }
            if (!pathEntryExists(shardPath)) {
              throw new SafetensorsError(indexPath, `shard ${quotedName(file)} listed for this tensor does not exist`, name);
            }
            shard = SafetensorsFile.open(shardPath);
            files.set(file, shard);
          }
          if (!shard.has(name)) {
            throw new SafetensorsError(indexPath, `the index places this tensor in ${quotedName(file)}, which does not contain it`, name);
          }
          location.set(name, shard);
        }
      } else if (pathEntryExists(singlePath)) {
        const file = SafetensorsFile.open(singlePath);
        files.set(SINGLE_FILE, file);
        for (const name of file.names()) location.set(name, file);
      } else {
        throw new SafetensorsError(dir, `no ${SINGLE_FILE} or ${INDEX_FILE} in this folder`);
      }
    } catch (err) {
      for (const f of files.values()) f.close();
      throw err;
    }
    return new Checkpoint(dir, files, location);
  }

  private static readIndex(indexPath: string): Record<string, string> {
    let text: string;
    try {
      text = readRegularFile(indexPath).toString('utf8');
    } catch (err) {
      if (err instanceof FileKindError) throw new SafetensorsError(indexPath, err.detail);
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new SafetensorsError(indexPath, `not valid JSON: ${jsonErrorDetail(err)}`);
    }
    const weightMap = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
      throw new SafetensorsError(indexPath, 'has no "weight_map" object');
    }
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== 'string') {
        throw new SafetensorsError(indexPath, `weight_map value must be a file name, got ${previewJson(file)}`, name);
      }
    }
    return weightMap as Record<string, string>;
  }

  /** Every tensor name in the checkpoint. */
  names(): string[] {
    return [...this.location.keys()];
  }

  has(name: string): boolean {
    return this.location.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    return this.fileOf(name).info(name);
  }

  /** Total bytes of tensor data on disk. */
  totalBytes(): number {
    let n = 0;
    for (const name of this.location.keys()) n += this.info(name).byteLength;
    return n;
  }

  /** The raw bytes of one tensor, read from disk now. */
  readBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }

  /** Reads `dst.length` bytes of one tensor's data, `byteOffset` bytes into it, into `dst`. */
  readBytesInto(name: string, dst: Uint8Array, byteOffset = 0): void {
    this.fileOf(name).readBytesInto(name, dst, byteOffset);
  }

  read(name: string): DecodedTensor {
    return this.fileOf(name).read(name);
  }

  readTensor(name: string): tf.Tensor {
    return this.fileOf(name).readTensor(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.location.get(name);
    if (file === undefined) throw new SafetensorsError(this.dir, 'no such tensor in this checkpoint', name);
    return file;
  }

  close(): void {
    for (const f of this.files.values()) f.close();
  }
}
