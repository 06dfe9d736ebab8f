/**
 * Packed weight formats with exactly GGUF's (ggml's) block layouts, so a GGUF file's tensors can be
 * used as they are and our packed checkpoints convert to GGUF without requantizing.
 *
 * A packed weight of shape [..., cols] is stored row-major: every row of `cols` weights is a run of
 * blocks, rows back to back.
 * - `q8_0`: 34-byte blocks of 32 weights: an f16 scale `d`, then 32 int8 `q`; w = q · d.
 * - `q4_0`: 18-byte blocks of 32 weights: an f16 scale `d`, then 16 bytes whose low nibbles hold
 *   weights 0–15 and high nibbles weights 16–31; w = (nibble − 8) · d.
 * - `bf16`: the upper 16 bits of each float32 (2 bytes a weight).
 */

/** A packed weight format. */
export type PackedFormat = 'bf16' | 'q8_0' | 'q4_0';

/** What a weight is held as: float32 or one of the packed formats. */
export type WeightDtype = 'f32' | PackedFormat;

export const PACKED_FORMATS: readonly PackedFormat[] = ['bf16', 'q8_0', 'q4_0'];
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['f32', ...PACKED_FORMATS];

/** Weights in one block of the quantized formats (ggml's QK8_0 = QK4_0 = 32). */
export const QUANT_BLOCK = 32;

interface FormatLayout {
  /** Weights per block. */
  blockWeights: number;
  /** Bytes per block. */
  blockBytes: number;
}

const LAYOUTS: Record<WeightDtype, FormatLayout> = {
  f32: { blockWeights: 1, blockBytes: 4 },
  bf16: { blockWeights: 1, blockBytes: 2 },
  q8_0: { blockWeights: QUANT_BLOCK, blockBytes: 2 + QUANT_BLOCK },
  q4_0: { blockWeights: QUANT_BLOCK, blockBytes: 2 + QUANT_BLOCK / 2 },
};

export function isWeightDtype(s: unknown): s is WeightDtype {
  return typeof s === 'string' && Object.hasOwn(LAYOUTS, s);
}

export function isPackedFormat(s: unknown): s is PackedFormat {
  return isWeightDtype(s) && s !== 'f32';
}

/** Weights per block of `format` (1 for f32 and bf16, 32 for q8_0 and q4_0). */
export function blockWeights(format: WeightDtype): number {
  return LAYOUTS[format].blockWeights;
}

/** Whether rows of `cols` weights can be held in `format` (quantized rows are whole blocks). */
export function canPackRows(format: WeightDtype, cols: number): boolean {
  return Number.isInteger(cols) && cols > 0 && cols % LAYOUTS[format].blockWeights === 0;
}

/** Bytes of one row of `cols` weights in `format`; throws when the row is not whole blocks. */
export function packedRowBytes(format: WeightDtype, cols: number): number {
  const { blockWeights: per, blockBytes } = LAYOUTS[format];
  if (!canPackRows(format, cols)) {
    throw new RangeError(`A ${format} row must hold a positive multiple of ${per} weights, got ${cols}.`);
  }
  return (cols / per) * blockBytes;
}

/** Bytes of a whole weight of `shape` in `format` (the last dimension is the row). */
export function packedByteLength(format: WeightDtype, shape: readonly number[]): number {
  if (shape.length === 0) throw new RangeError('A packed weight needs at least one dimension.');
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return rows * packedRowBytes(format, cols);
}

/** Bytes per weight of `format`, for memory estimates (q8_0: 1.0625, q4_0: 0.5625). */
export function bytesPerWeight(format: WeightDtype): number {
  const { blockWeights: per, blockBytes } = LAYOUTS[format];
  return blockBytes / per;
}
