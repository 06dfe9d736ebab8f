/**
 * How a graniteflow packed checkpoint describes its packed weights inside plain safetensors (see
 * the core README, "Packed checkpoints"): each packed weight is an ordinary tensor whose bytes are
 * the GGUF block rows, and `__metadata__` (strings only, as the format requires) says which
 * tensors are packed, in which format, and their logical shape.
 *
 * - `"graniteflow.packed": "1"` marks the file (the version of this layout);
 * - `"graniteflow.dtype.<name>": "q4_0"` (or `q8_0`, `bf16`) per packed tensor;
 * - `"graniteflow.shape.<name>": "[2048,8192]"` its logical shape, as compact JSON.
 *
 * q8_0 / q4_0 weights are stored as `U8` [rows, rowBytes] (rows = the product of every logical
 * dimension but the last); bf16 weights as `BF16` in their logical shape, so any safetensors tool
 * still reads them as what they are.
 */
import { isPackedFormat, packedRowBytes, PACKED_FORMATS, QUANT_BLOCK, type PackedFormat } from '../packed/formats';
import type { SafetensorsDtype } from './dtypes';
import { quotedName } from './errors';

export const PACKED_MARKER_KEY = 'graniteflow.packed';
/** The layout version this graniteflow writes and reads. */
export const PACKED_LAYOUT_VERSION = '1';
export const PACKED_DTYPE_PREFIX = 'graniteflow.dtype.';
export const PACKED_SHAPE_PREFIX = 'graniteflow.shape.';

/** What a packed tensor holds: its format and its logical (unpacked) shape. */
export interface PackedLayout {
  format: PackedFormat;
  shape: number[];
}

/** The safetensors dtype and shape a weight of logical `shape` packed in `format` is stored as. */
export function packedStorage(format: PackedFormat, shape: readonly number[]): { dtype: SafetensorsDtype; shape: number[] } {
  if (format === 'bf16') return { dtype: 'BF16', shape: [...shape] };
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { dtype: 'U8', shape: [rows, packedRowBytes(format, cols)] };
}

/** The `__metadata__` entries describing one packed tensor. */
export function packedMetadataEntries(name: string, layout: PackedLayout): [string, string][] {
  return [
    [PACKED_DTYPE_PREFIX + name, layout.format],
    [PACKED_SHAPE_PREFIX + name, JSON.stringify(layout.shape)],
  ];
}

/** A problem with the packed metadata: what is wrong, and the tensor it concerns (if any). */
export class PackedMetadataProblem {
  constructor(
    readonly detail: string,
    readonly tensor?: string,
  ) {}
}

function key(k: string): string {
  return `__metadata__.${quotedName(k)}`;
}

function parseShape(name: string, text: string): number[] {
  let shape: unknown;
  try {
    shape = JSON.parse(text);
  } catch {
    shape = undefined;
  }
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d > 0)) {
    const shown = text.length > 60 ? `${text.slice(0, 57)}...` : text;
    throw new PackedMetadataProblem(
      `${key(PACKED_SHAPE_PREFIX + name)} is ${quotedName(shown)}, not a JSON list of positive integers such as [2048,8192]`,
      name,
    );
  }
  return shape as number[];
}

/**
 * The packed tensors a header's `__metadata__` describes, checked against the tensors the header
 * holds (`tensors`: name → storage dtype and shape). Throws a {@link PackedMetadataProblem} for a
 * marker of another version, entries without the marker, an unknown format, a missing or malformed
 * logical shape, metadata naming a tensor the file does not hold, or a tensor whose storage does
 * not match its claimed format and shape.
 */
export function readPackedLayouts(
  metadata: Record<string, string>,
  tensors: ReadonlyMap<string, { dtype: SafetensorsDtype; shape: number[] }>,
): Map<string, PackedLayout> {
  const layouts = new Map<string, PackedLayout>();
  const marker = metadata[PACKED_MARKER_KEY];
  const formats = new Map<string, string>();
  const shapes = new Map<string, string>();
  for (const [k, v] of Object.entries(metadata)) {
    if (k.startsWith(PACKED_DTYPE_PREFIX)) formats.set(k.slice(PACKED_DTYPE_PREFIX.length), v);
    else if (k.startsWith(PACKED_SHAPE_PREFIX)) shapes.set(k.slice(PACKED_SHAPE_PREFIX.length), v);
  }
  if (marker === undefined) {
    const first = [...formats.keys(), ...shapes.keys()][0];
    if (first === undefined) return layouts;
    throw new PackedMetadataProblem(
      `__metadata__ describes packed tensors but lacks the ${quotedName(PACKED_MARKER_KEY)}: ${quotedName(PACKED_LAYOUT_VERSION)} entry that marks a graniteflow packed file`,
      first,
    );
  }
  if (marker !== PACKED_LAYOUT_VERSION) {
    throw new PackedMetadataProblem(
      `${key(PACKED_MARKER_KEY)} is ${quotedName(marker)}; this graniteflow reads packed layout version ${PACKED_LAYOUT_VERSION} ` +
        '(a newer graniteflow wrote the file?)',
    );
  }
  for (const name of shapes.keys()) {
    if (!formats.has(name)) {
      throw new PackedMetadataProblem(
        `${key(PACKED_SHAPE_PREFIX + name)} gives a logical shape but ${key(PACKED_DTYPE_PREFIX + name)} is missing`,
        name,
      );
    }
  }
  for (const [name, format] of formats) {
    const stored = tensors.get(name);
    if (stored === undefined) {
      throw new PackedMetadataProblem(`${key(PACKED_DTYPE_PREFIX + name)} describes a packed tensor the file does not contain`, name);
    }
    if (!isPackedFormat(format)) {
      throw new PackedMetadataProblem(
        `${key(PACKED_DTYPE_PREFIX + name)} is ${quotedName(format)}, not a packed format (${PACKED_FORMATS.join(', ')})`,
        name,
      );
    }
    const shapeText = shapes.get(name);
    if (shapeText === undefined) {
      throw new PackedMetadataProblem(`is packed as ${format} but ${key(PACKED_SHAPE_PREFIX + name)} (its logical shape) is missing`, name);
    }
    const shape = parseShape(name, shapeText);
    const cols = shape[shape.length - 1];
    if (format !== 'bf16' && cols % QUANT_BLOCK !== 0) {
      throw new PackedMetadataProblem(
        `is packed as ${format} with logical shape [${shape}], but ${format} rows are whole blocks of ${QUANT_BLOCK} weights and ${cols} is not a multiple of ${QUANT_BLOCK}`,
        name,
      );
    }
    const expected = packedStorage(format, shape);
    if (!Number.isSafeInteger(expected.shape.reduce((a, b) => a * b, 1))) {
      throw new PackedMetadataProblem(`logical shape [${shape}] is too large`, name);
    }
    if (
      stored.dtype !== expected.dtype ||
      stored.shape.length !== expected.shape.length ||
      stored.shape.some((d, i) => d !== expected.shape[i])
    ) {
      throw new PackedMetadataProblem(
        `is packed as ${format} of logical shape [${shape}], which is stored as ${expected.dtype} [${expected.shape}], ` +
          `but the header says ${stored.dtype} [${stored.shape}]`,
        name,
      );
    }
    layouts.set(name, { format, shape });
  }
  return layouts;
}
