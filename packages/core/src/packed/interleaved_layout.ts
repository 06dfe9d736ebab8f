import * as tf from '@tensorflow/tfjs-core';
import { nativeAddon } from '../native/native_addon';
import type { PackedFormat } from './formats';
import { environmentVariable } from '../environment';

/** The smallest weight worth regrouping: one group of 16 rows (fewer stay in row order anyway). */
const GROUP_ROWS = 16;

/**
 * Whether a packed weight of `format` and `shape` made now is held interleaved (see the native
 * README, "Interleaved layout"): on the `native` backend, for 2-D q8_0 / q4_0 weights, when the
 * addon's matmul for the format runs at avx512 (its interleaved kernel; other levels are faster
 * over row order). `GRANITEFLOW_INTERLEAVE=0` keeps every weight in row order.
 */
export function interleavesHere(format: PackedFormat, shape: readonly number[]): boolean {
  if (format === 'bf16' || shape.length !== 2 || shape[0] < GROUP_ROWS) return false;
  if (tf.getBackend() !== 'native' || environmentVariable('GRANITEFLOW_INTERLEAVE') === '0') return false;
  const addon = nativeAddon();
  return addon !== null && typeof addon.interleave === 'function' && addon.kernelLevel(`matmul.${format}`) === 'avx512';
}

/** Regroups a 2-D weight's bytes in place (row order ↔ interleaved). */
export function convertLayout(format: PackedFormat, bytes: Uint8Array, rows: number, cols: number, toInterleaved: boolean): void {
  const addon = nativeAddon();
  if (addon === null || typeof addon.interleave !== 'function') {
    throw new Error(
      `Converting a ${format} weight [${rows}, ${cols}] between row order and the interleaved layout needs @graniteflow/native with interleave().`,
    );
  }
  addon.interleave(format, bytes, rows, cols, toInterleaved);
}

/** The weight's bytes in row order: `bytes` itself, or for an interleaved weight a converted copy. */
export function rowOrderBytes(format: PackedFormat, bytes: Uint8Array, rows: number, cols: number, interleaved: boolean): Uint8Array {
  if (!interleaved) return bytes;
  const copy = bytes.slice();
  convertLayout(format, copy, rows, cols, false);
  return copy;
}
