import * as fs from 'node:fs';

/** A float32 or int32 array with its shape, as stored in a .npy file. */
export interface NpyArray {
  shape: number[];
  data: Float32Array | Int32Array;
}

const MAGIC = '\x93NUMPY';

/** Reads a NumPy .npy file (format 1.0/2.0, little-endian `<f4` or `<i4`, C order). */
export function readNpy(file: string): NpyArray {
  const buf = fs.readFileSync(file);
  if (buf.subarray(0, 6).toString('latin1') !== MAGIC) throw new Error(`${file}: not a .npy file (bad magic)`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.subarray(start, start + headerLen).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`${file}: cannot parse .npy header ${header.trim()}`);
  }
  if (fortran === 'True') throw new Error(`${file}: Fortran-ordered arrays are not supported`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const body = buf.subarray(start + headerLen);
  if (body.length < n * 4) throw new Error(`${file}: expected ${n * 4} data bytes, found ${body.length}`);
  const bytes = new Uint8Array(n * 4);
  bytes.set(body.subarray(0, n * 4));
  if (descr === '<f4') return { shape, data: new Float32Array(bytes.buffer) };
  if (descr === '<i4') return { shape, data: new Int32Array(bytes.buffer) };
  throw new Error(`${file}: dtype ${descr} is not supported (expected <f4 or <i4)`);
}

/** Encodes a float32 or int32 array as .npy (format 1.0). */
export function encodeNpy(array: NpyArray): Buffer {
  const descr = array.data instanceof Float32Array ? '<f4' : '<i4';
  const shape = array.shape.length === 1 ? `(${array.shape[0]},)` : `(${array.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Total header (magic + version + length + dict + newline) is padded to a multiple of 64.
  const unpadded = 10 + header.length + 1;
  header += `${' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const prefix = Buffer.alloc(10);
  prefix.write(MAGIC, 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  const data = Buffer.from(array.data.buffer, array.data.byteOffset, array.data.byteLength);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), data]);
}

/** Writes a .npy file (under a temporary name, then renamed into place). */
export function writeNpy(file: string, array: NpyArray): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, encodeNpy(array));
  fs.renameSync(tmp, file);
}
