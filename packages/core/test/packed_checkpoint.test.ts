import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import {
  Checkpoint,
  floatToBf16,
  initBackend,
  nativeAddon,
  openMappedCheckpoint,
  type PackedTensor,
  quantizeCheckpoint,
  quantizeRows,
  SafetensorsError,
  SafetensorsFile,
  writePackedCheckpoint,
  writePackedSafetensors,
  writeSafetensorsStream,
  type PackedCheckpointTensor,
  type PackedFormat,
} from '../src';
import { expectNoTensorLeak, seededRandom } from '../src/testing';
import { GOLDEN } from './fixtures';

function randomFloats(n: number, seed: number): Float32Array {
  const next = seededRandom(seed);
  return Float32Array.from({ length: n }, () => next() * 2 - 1);
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** An independent, deliberately naive parse of a safetensors file: the whole file in memory. */
function naiveParse(file: string) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<string, any>;
  const tensors = new Map<string, { dtype: string; shape: number[]; start: number; raw: Buffer }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, {
      dtype: e.dtype,
      shape: e.shape,
      start: 8 + n + e.data_offsets[0],
      raw: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]),
    });
  }
  return { dataStart: 8 + n, metadata: (header.__metadata__ ?? {}) as Record<string, string>, tensors };
}

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-packed-ckpt-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A weight of `shape` with random values, and its bytes packed by the JS quantizer. */
function weight(name: string, format: PackedFormat, shape: number[], seed: number) {
  const cols = shape[shape.length - 1];
  const values = randomFloats(
    shape.reduce((a, b) => a * b, 1),
    seed,
  );
  const packed = quantizeRows(format, values, values.length / cols, cols);
  return { name, format, shape, values, packed };
}

const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));

describe('the packed safetensors layout', () => {
  const q4 = weight('layers.0.in_proj.weight', 'q4_0', [96, 128], 1);
  const q8 = weight('layers.0.out_proj.weight', 'q8_0', [2, 3, 64], 2);
  const bf = weight('layers.0.experts.weight', 'bf16', [4, 6], 3);
  const norm = Float32Array.from([1, 2, 3]);
  const odd = Uint8Array.from([7, 8, 9, 10, 11]); // a BF16-sized row that breaks 4-byte alignment
  const file = () => path.join(tmp, 'layout.safetensors');

  beforeAll(async () => {
    await writePackedSafetensors(
      file(),
      [
        { name: 'norm.weight', dtype: 'F32', shape: [3], bytes: bytesOf(norm) },
        { name: 'odd', dtype: 'U8', shape: [5], bytes: odd },
        { name: q4.name, dtype: 'q4_0', shape: q4.shape, bytes: q4.packed },
        { name: q8.name, dtype: 'q8_0', shape: q8.shape, fill: (dst, offset) => dst.set(q8.packed.subarray(offset, offset + dst.length)) },
        { name: bf.name, dtype: 'bf16', shape: bf.shape, bytes: bf.packed },
      ],
      { metadata: { note: 'kept' } },
    );
  });

  it('stores q8_0 / q4_0 as U8 [rows, rowBytes] of GGUF block rows, bf16 as BF16, described in __metadata__', () => {
    const { metadata, tensors } = naiveParse(file());
    expect(metadata).toEqual({
      note: 'kept',
      'graniteflow.packed': '1',
      'graniteflow.dtype.layers.0.in_proj.weight': 'q4_0',
      'graniteflow.shape.layers.0.in_proj.weight': '[96,128]',
      'graniteflow.dtype.layers.0.out_proj.weight': 'q8_0',
      'graniteflow.shape.layers.0.out_proj.weight': '[2,3,64]',
      'graniteflow.dtype.layers.0.experts.weight': 'bf16',
      'graniteflow.shape.layers.0.experts.weight': '[4,6]',
    });
    // q4_0: 18 bytes per 32 weights; q8_0: 34 bytes per 32 weights.
    expect(tensors.get(q4.name)).toMatchObject({ dtype: 'U8', shape: [96, (128 / 32) * 18] });
    expect(tensors.get(q8.name)).toMatchObject({ dtype: 'U8', shape: [6, (64 / 32) * 34] });
    expect(tensors.get(bf.name)).toMatchObject({ dtype: 'BF16', shape: [4, 6] });
    expect(Buffer.compare(tensors.get(q4.name)!.raw, q4.packed)).toBe(0);
    expect(Buffer.compare(tensors.get(q8.name)!.raw, q8.packed)).toBe(0);
    expect(Buffer.compare(tensors.get(bf.name)!.raw, bytesOf(floatToBf16(bf.values)))).toBe(0);
    expect(Buffer.compare(tensors.get('norm.weight')!.raw, bytesOf(norm))).toBe(0);
  });

  it('starts the data 32-byte aligned and every tensor whose size is a multiple of 4 on a multiple of 4', () => {
    const { dataStart, tensors } = naiveParse(file());
    expect(dataStart % 32).toBe(0);
    for (const [name, t] of tensors) {
      if (t.raw.length % 4 === 0) expect([name, t.start % 4]).toEqual([name, 0]);
    }
    // The 5-byte tensor goes last, where it cannot push any other off alignment.
    const last = [...tensors].sort((a, b) => b[1].start - a[1].start)[0][0];
    expect(last).toBe('odd');
  });

  it('the reader reports packed tensors with their format, logical shape, file and absolute byte range', () => {
    const r = SafetensorsFile.open(file());
    const { tensors } = naiveParse(file());
    expect(r.info(q4.name)).toEqual({
      name: q4.name,
      dtype: 'U8',
      shape: [96, 72],
      file: file(),
      offset: tensors.get(q4.name)!.start,
      byteLength: q4.packed.length,
      packed: { format: 'q4_0', shape: [96, 128] },
    });
    expect(r.info(q8.name).packed).toEqual({ format: 'q8_0', shape: [2, 3, 64] });
    expect(r.info(bf.name).packed).toEqual({ format: 'bf16', shape: [4, 6] });
    expect(r.info('norm.weight').packed).toBeUndefined();
    const part = new Uint8Array(40);
    r.readBytesInto(q4.name, part, 100);
    expect([...part]).toEqual([...q4.packed.subarray(100, 140)]);
    expect(() => r.readBytesInto(q4.name, part, q4.packed.length - 39)).toThrow(
      /tensor "layers\.0\.in_proj\.weight": cannot read bytes \[6873, 6913\) of a tensor of 6912 bytes/,
    );
    r.close();
  });
});

/** Builds a file from a header object and a data section, bypassing the writer. */
function rawFile(name: string, header: Record<string, unknown>, data: Buffer): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

describe('packed metadata that does not match the file', () => {
  // A q4_0 [2, 64] weight is U8 [2, 36].
  const entry = { dtype: 'U8', shape: [2, 36], data_offsets: [0, 72] };
  const meta = (m: Record<string, string>) => ({ __metadata__: { 'graniteflow.packed': '1', ...m }, w: entry });
  const cases: [string, Record<string, unknown>, RegExp, string | undefined][] = [
    [
      'an unknown format',
      meta({ 'graniteflow.dtype.w': 'q5_k', 'graniteflow.shape.w': '[2,64]' }),
      /__metadata__\."graniteflow\.dtype\.w" is "q5_k", not a packed format \(bf16, q8_0, q4_0\)/,
      'w',
    ],
    [
      'a logical shape whose packed size is not the stored one',
      meta({ 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[3,64]' }),
      /is packed as q4_0 of logical shape \[3,64\], which is stored as U8 \[3,36\], but the header says U8 \[2,36\]/,
      'w',
    ],
    [
      'wrong rowBytes for the format',
      meta({ 'graniteflow.dtype.w': 'q8_0', 'graniteflow.shape.w': '[2,64]' }),
      /is packed as q8_0 of logical shape \[2,64\], which is stored as U8 \[2,68\], but the header says U8 \[2,36\]/,
      'w',
    ],
    [
      'metadata naming a tensor the file lacks',
      meta({
        'graniteflow.dtype.w': 'q4_0',
        'graniteflow.shape.w': '[2,64]',
        'graniteflow.dtype.gone': 'q4_0',
        'graniteflow.shape.gone': '[2,64]',
      }),
      /"graniteflow\.dtype\.gone" describes a packed tensor the file does not contain/,
      'gone',
    ],
    [
      'no logical shape',
      meta({ 'graniteflow.dtype.w': 'q4_0' }),
      /is packed as q4_0 but __metadata__\."graniteflow\.shape\.w" \(its logical shape\) is missing/,
      'w',
    ],
    [
      'a shape without a format',
      meta({ 'graniteflow.shape.w': '[2,64]' }),
      /"graniteflow\.shape\.w" gives a logical shape but __metadata__\."graniteflow\.dtype\.w" is missing/,
      'w',
    ],
    [
      'a shape that is not a list of positive integers',
      meta({ 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[2,-64]' }),
      /"graniteflow\.shape\.w" is "\[2,-64\]", not a JSON list of positive integers/,
      'w',
    ],
    [
      'rows that are not whole blocks',
      meta({ 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[4,36]' }),
      /36 is not a multiple of 32/,
      'w',
    ],
    [
      'entries without the marker',
      { __metadata__: { 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[2,64]' }, w: entry },
      /describes packed tensors but lacks the "graniteflow\.packed": "1" entry/,
      'w',
    ],
    [
      'a marker of another version',
      { __metadata__: { 'graniteflow.packed': '2' }, w: entry },
      /"graniteflow\.packed" is "2"; this graniteflow reads packed layout version 1/,
      undefined,
    ],
    [
      'a packed F32 tensor',
      {
        __metadata__: { 'graniteflow.packed': '1', 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[2,64]' },
        w: { dtype: 'F32', shape: [18], data_offsets: [0, 72] },
      },
      /which is stored as U8 \[2,36\], but the header says F32 \[18\]/,
      'w',
    ],
  ];
  it.each(cases)('%s is a SafetensorsError naming the file and tensor', (label, header, message, tensor) => {
    const file = rawFile(`${label.replace(/\W+/g, '-')}.safetensors`, header, Buffer.alloc(72));
    let caught: unknown;
    try {
      SafetensorsFile.open(file);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect((caught as SafetensorsError).file).toBe(file);
    expect((caught as SafetensorsError).tensor).toBe(tensor);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).toContain(file);
  });

  it('a plain file, and a packed file without packed tensors, open as before', () => {
    const plain = rawFile('plain.safetensors', { __metadata__: { format: 'pt' }, w: entry }, Buffer.alloc(72));
    expect(SafetensorsFile.open(plain).info('w').packed).toBeUndefined();
    const marked = rawFile('marked.safetensors', { __metadata__: { 'graniteflow.packed': '1' }, w: entry }, Buffer.alloc(72));
    expect(SafetensorsFile.open(marked).info('w').packed).toBeUndefined();
  });
});

describe('streaming writes', () => {
  it('a tensor larger than the chunk is filled and written piece by piece, in whole rows', async () => {
    const rows = 50;
    const rowBytes = 36;
    const all = Uint8Array.from({ length: rows * rowBytes }, (_, i) => (i * 31 + 7) & 0xff);
    const pieces: [number, number][] = [];
    const file = path.join(tmp, 'chunks.safetensors');
    await writeSafetensorsStream(
      file,
      [
        {
          name: 'w',
          dtype: 'U8',
          shape: [rows, rowBytes],
          granularity: rowBytes,
          fill: (dst, offset) => {
            pieces.push([offset, dst.length]);
            dst.set(all.subarray(offset, offset + dst.length));
          },
        },
      ],
      { chunkBytes: 400 },
    );
    // 400 bytes round down to 11 rows of 36 (396): five pieces, the last one of 6 rows.
    expect(pieces).toEqual([
      [0, 396],
      [396, 396],
      [792, 396],
      [1188, 396],
      [1584, 216],
    ]);
    expect(Buffer.compare(naiveParse(file).tensors.get('w')!.raw, all)).toBe(0);
    expect(leftovers(tmp)).toEqual([]);
  });

  it('an error mid-write leaves nothing at the destination and no temporary file', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'fail-'));
    const file = path.join(dir, 'model.safetensors');
    let calls = 0;
    const failing = writeSafetensorsStream(
      file,
      [
        {
          name: 'w',
          dtype: 'F32',
          shape: [1000],
          fill: () => {
            if (++calls === 2) throw new Error('source went away');
          },
        },
      ],
      { chunkBytes: 1024 },
    );
    await expect(failing).rejects.toThrow('source went away');
    expect(calls).toBe(2);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('an error keeps the file that was there, and an abort removes the partial file', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'abort-'));
    const file = path.join(dir, 'model.safetensors');
    fs.writeFileSync(file, 'previous');
    const controller = new AbortController();
    const aborted = writeSafetensorsStream(
      file,
      [{ name: 'w', dtype: 'F32', shape: [1000], fill: () => controller.abort(new Error('stopped by the user')) }],
      { chunkBytes: 1024, signal: controller.signal },
    );
    await expect(aborted).rejects.toThrow('stopped by the user');
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    expect(fs.readFileSync(file, 'utf8')).toBe('previous');
  });

  it('refuses duplicate names and byte counts that do not match the shape, before writing', async () => {
    const file = path.join(tmp, 'refused.safetensors');
    const w = { name: 'w', dtype: 'F32' as const, shape: [2], bytes: new Uint8Array(8) };
    await expect(writeSafetensorsStream(file, [w, w])).rejects.toThrow(/tensor "w": is given twice/);
    await expect(writeSafetensorsStream(file, [{ ...w, bytes: new Uint8Array(7) }])).rejects.toThrow(
      /shape \[2\] of F32 needs 8 bytes, got 7/,
    );
    await expect(writePackedSafetensors(file, [{ name: 'q', dtype: 'q4_0', shape: [2, 48], bytes: new Uint8Array(0) }])).rejects.toThrow(
      /tensor "q": cannot be packed as q4_0: its rows of 48 weights are not whole blocks of 32/,
    );
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe('packed checkpoints in shards', () => {
  const weights = [0, 1, 2, 3, 4].map((i) => weight(`layers.${i}.w`, i % 2 ? 'q8_0' : 'q4_0', [16, 64], 10 + i));
  const tensors = (): PackedCheckpointTensor[] => weights.map((w) => ({ name: w.name, dtype: w.format, shape: w.shape, bytes: w.packed }));

  it('splits at maxShardBytes into Hugging Face shards with an index, and reads back', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'shards-'));
    // q4_0 [16, 64] is 576 bytes, q8_0 1088: at most 1700 bytes a shard gives 576+1088 | 576+1088 | 576.
    const files = await writePackedCheckpoint(dir, tensors(), { maxShardBytes: 1700 });
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata).toEqual({ total_size: 3 * 576 + 2 * 1088 });
    expect(index.weight_map['layers.4.w']).toBe('model-00003-of-00003.safetensors');
    const ckpt = Checkpoint.open(dir);
    for (const w of weights) {
      expect(ckpt.info(w.name).packed).toEqual({ format: w.format, shape: w.shape });
      expect(sha(ckpt.readBytes(w.name))).toBe(sha(w.packed));
    }
    ckpt.close();
    expect(fs.readdirSync(dir).sort()).toEqual([...files].sort());
  });

  it('removes the shards it wrote when a later one fails', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'shards-fail-'));
    const broken = tensors();
    broken[4] = {
      name: 'layers.4.w',
      dtype: 'q4_0',
      shape: [16, 64],
      fill: () => {
        throw new Error('disk trouble');
      },
    };
    await expect(writePackedCheckpoint(dir, broken, { maxShardBytes: 1700 })).rejects.toThrow('disk trouble');
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('quantize → write → memory-map → read', () => {
  const native = nativeAddon();
  const big = weight('big.weight', 'q4_0', [1024, 2048], 21); // 1.1 MiB packed
  const q8 = weight('q8.weight', 'q8_0', [64, 256], 22);
  const floats = randomFloats(8 * 64, 23);
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(tmp, 'mapped-'));
    await writePackedCheckpoint(
      dir,
      [
        {
          name: big.name,
          dtype: 'q4_0',
          shape: big.shape,
          fill: (dst, offset) => dst.set(big.packed.subarray(offset, offset + dst.length)),
        },
        { name: q8.name, dtype: 'q8_0', shape: q8.shape, bytes: q8.packed },
        { name: 'dense.weight', dtype: 'F32', shape: [8, 64], bytes: bytesOf(floats) },
        { name: 'norm.weight', dtype: 'BF16', shape: [64], bytes: bytesOf(floatToBf16(floats.subarray(0, 64))) },
      ],
      { chunkBytes: 64 << 10 },
    );
  });

  (native === null ? describe.skip.each : describe.each)(['cpu', 'native'])('mapped on %s', (backend) => {
    beforeAll(async () => {
      await initBackend(backend as 'cpu' | 'native');
    });

    it('packed weights are views of the mapping, bit-exact with the quantizer, never copied into the JS heap', async () => {
      await expectNoTensorLeak(() => {
        const ckpt = openMappedCheckpoint(dir);
        expect(ckpt.mapped).toBe(true);
        const heapBuffers = process.memoryUsage().arrayBuffers;
        const w = ckpt.packedTensor(big.name);
        const q = ckpt.packedTensor(q8.name);
        expect(w.format).toBe('q4_0');
        expect(w.shape).toEqual([1024, 2048]);
        const words = w.bytes.dataSync() as Int32Array;
        // The tensor's storage is the mapping: the same ArrayBuffer the mapped view of the file is on.
        expect(words.buffer).toBe(ckpt.mappedBytes(big.name)!.buffer);
        expect(words.buffer).toBe((q.bytes.dataSync() as Int32Array).buffer);
        expect(process.memoryUsage().arrayBuffers - heapBuffers).toBeLessThan(256 << 10);
        expect(sha(w.readBytes())).toBe(sha(big.packed));
        expect(sha(q.readBytes())).toBe(sha(q8.packed));
        expect(ckpt.stats()).toEqual({
          inPlaceTensors: 2,
          inPlaceBytes: big.packed.length + q8.packed.length,
          copiedTensors: 0,
          copiedBytes: 0,
        });
        w.dispose();
        q.dispose();
        ckpt.close();
      });
    });

    it('aligned F32 tensors are views of the mapping too; BF16 is widened into new memory', async () => {
      await expectNoTensorLeak(() => {
        const ckpt = openMappedCheckpoint(dir);
        const dense = ckpt.floatTensor('dense.weight');
        expect((dense.dataSync() as Float32Array).buffer).toBe(ckpt.mappedBytes('dense.weight')!.buffer);
        expect([...dense.dataSync()]).toEqual([...floats]);
        const norm = ckpt.load('norm.weight') as tf.Tensor;
        expect((norm.dataSync() as Float32Array).buffer).not.toBe(ckpt.mappedBytes('norm.weight')!.buffer);
        expect(sha(bytesOf(floatToBf16(norm.dataSync() as Float32Array)))).toBe(sha(bytesOf(floatToBf16(floats.subarray(0, 64)))));
        expect(ckpt.stats()).toMatchObject({ inPlaceTensors: 1, copiedTensors: 1 });
        dense.dispose();
        norm.dispose();
        ckpt.close();
      });
    });

    it('a file larger than one mapping is mapped in windows that start at tensors, with the same bytes', () => {
      const ckpt = openMappedCheckpoint(dir, { maxMappingBytes: 1 << 20 }); // the q4_0 weight alone is 1.1 MiB
      expect(ckpt.mappedBytes(big.name)).toBeNull();
      const w = ckpt.packedTensor(big.name);
      expect(sha(w.readBytes())).toBe(sha(big.packed));
      const q = ckpt.packedTensor(q8.name);
      expect((q.bytes.dataSync() as Int32Array).buffer).toBe(ckpt.mappedBytes(q8.name)!.buffer);
      expect(ckpt.mappedBytes(q8.name)!.buffer).toBe(ckpt.mappedBytes('dense.weight')!.buffer);
      expect(sha(q.readBytes())).toBe(sha(q8.packed));
      expect(ckpt.stats()).toMatchObject({ inPlaceTensors: 1, copiedTensors: 1 });
      w.dispose();
      q.dispose();
      ckpt.close();
    });

    it("a tensor that starts unaligned (another writer's file) is copied, with the same bytes", () => {
      const other = fs.mkdtempSync(path.join(tmp, 'unaligned-'));
      const odd = weight('w', 'q4_0', [4, 64], 31); // 144 bytes
      const header = {
        __metadata__: { 'graniteflow.packed': '1', 'graniteflow.dtype.w': 'q4_0', 'graniteflow.shape.w': '[4,64]' },
        pad: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
        w: { dtype: 'U8', shape: [4, 36], data_offsets: [3, 147] },
      };
      const json = Buffer.from(JSON.stringify(header));
      const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(padded.length));
      fs.writeFileSync(path.join(other, 'model.safetensors'), Buffer.concat([len, padded, Buffer.from([1, 2, 3]), odd.packed]));
      const ckpt = openMappedCheckpoint(other);
      const w = ckpt.packedTensor('w');
      expect((w.bytes.dataSync() as Int32Array).buffer).not.toBe(ckpt.mappedBytes('w')!.buffer);
      expect(sha(w.readBytes())).toBe(sha(odd.packed));
      expect(ckpt.stats()).toMatchObject({ inPlaceTensors: 0, copiedTensors: 1 });
      w.dispose();
      ckpt.close();
    });
  });

  it.each(['cpu', 'wasm'])('reading instead of mapping (map: false; the %s backend) gives the same tensors', async (backend) => {
    await initBackend(backend as 'cpu' | 'wasm');
    await expectNoTensorLeak(() => {
      const ckpt = openMappedCheckpoint(dir, backend === 'cpu' ? { map: false } : {});
      expect(ckpt.mapped).toBe(false);
      // On wasm the backend's own memory is the reason, with or without the addon (GRANITEFLOW_NATIVE=0).
      const reason = backend === 'cpu' ? /mapping was switched off \(map: false\)/ : /the wasm backend keeps tensors in its own memory/;
      expect(ckpt.notMappedReason).toMatch(reason);
      expect(ckpt.mappedBytes(big.name)).toBeNull();
      const w = ckpt.packedTensor(big.name);
      const q = ckpt.load(q8.name) as PackedTensor;
      const dense = ckpt.floatTensor('dense.weight');
      expect(sha(w.readBytes())).toBe(sha(big.packed));
      expect(sha(q.readBytes())).toBe(sha(q8.packed));
      expect([...dense.dataSync()]).toEqual([...floats]);
      expect(ckpt.stats()).toMatchObject({ inPlaceTensors: 0, copiedTensors: 3 });
      w.dispose();
      q.dispose();
      dense.dispose();
      ckpt.close();
    });
    await initBackend('cpu');
  });

  it('with GRANITEFLOW_NATIVE=0 nothing is mapped and the bytes are the same', () => {
    const tsx = require.resolve('tsx/cli');
    const src = path.resolve(__dirname, '..', 'src');
    const script = `const core = require(${JSON.stringify(src)});
(async () => {
  await core.initBackend('cpu');
  const ckpt = core.openMappedCheckpoint(${JSON.stringify(dir)});
  const w = ckpt.packedTensor(${JSON.stringify(big.name)});
  const hash = require('node:crypto').createHash('sha256').update(w.readBytes()).digest('hex');
  console.log(JSON.stringify({ mapped: ckpt.mapped, reason: ckpt.notMappedReason, hash }));
})().catch((e) => console.log('ERR ' + e.message));`;
    const r = spawnSync(process.execPath, [tsx, '-e', script], {
      env: { ...process.env, GRANITEFLOW_NATIVE: '0' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(JSON.parse(r.stdout)).toEqual({
      mapped: false,
      reason: 'the native addon is unavailable (switched off with GRANITEFLOW_NATIVE=0)',
      hash: sha(big.packed),
    });
  });

  it('packedTensor on a plain tensor and floatTensor on a packed one name the tensor', () => {
    const ckpt = openMappedCheckpoint(dir);
    expect(() => ckpt.packedTensor('dense.weight')).toThrow(/tensor "dense\.weight": is a plain F32 tensor, not a packed weight/);
    expect(() => ckpt.floatTensor(big.name)).toThrow(/tensor "big\.weight": is a weight packed as q4_0: load it with packedTensor\(\)/);
    ckpt.close();
  });
});

describe('quantizeCheckpoint on the golden checkpoints', () => {
  /** Packs every 2-D tensor whose rows are whole blocks; keeps the rest. */
  const policyOf = (format: PackedFormat) => (_name: string, shape: readonly number[]) =>
    shape.length === 2 && shape[1] % 32 === 0 ? format : 'f32';

  it.each([
    ['micro_dense', 'q4_0'],
    ['tiny_moe', 'q8_0'],
    ['chat_tiny', 'bf16'],
  ] as const)('%s to %s: packed tensors equal the JS quantizer of the source, the rest the source bytes', async (folder, format) => {
    const source = Checkpoint.open(path.join(GOLDEN, folder));
    const out = fs.mkdtempSync(path.join(tmp, `q-${folder}-`));
    const result = await quantizeCheckpoint(source, out, { policy: policyOf(format), chunkBytes: 4096 });
    const packed = Checkpoint.open(out);
    expect(new Set(packed.names())).toEqual(new Set(source.names()));
    let packedCount = 0;
    for (const name of source.names()) {
      const info = source.info(name);
      const got = packed.info(name);
      if (policyOf(format)(name, info.shape) === 'f32') {
        expect([name, got.dtype, got.shape, got.packed]).toEqual([name, info.dtype, info.shape, undefined]);
        expect(sha(packed.readBytes(name))).toBe(sha(source.readBytes(name)));
        continue;
      }
      packedCount++;
      expect([name, got.packed]).toEqual([name, { format, shape: info.shape }]);
      const values = source.read(name).data as Float32Array;
      const expected = quantizeRows(format, values, info.shape[0], info.shape[1]);
      expect([name, sha(packed.readBytes(name))]).toEqual([name, sha(expected)]);
    }
    expect(packedCount).toBeGreaterThan(0);
    expect(result.packed[format]).toBe(packedCount);
    expect(result.kept).toBe(source.names().length - packedCount);
    packed.close();
    source.close();
  });

  it('refuses, before writing, a policy that packs rows which are not whole blocks, or an already packed source', async () => {
    const source = Checkpoint.open(path.join(GOLDEN, 'micro_dense'));
    const out = fs.mkdtempSync(path.join(tmp, 'q-refused-'));
    await expect(quantizeCheckpoint(source, out, { policy: (_n, shape) => (shape.length === 1 ? 'q4_0' : 'f32') })).rejects.toThrow(
      /tensor ".*": cannot be packed as q4_0: shape \[\d+\] does not end in rows of whole 32-weight blocks/,
    );
    expect(fs.readdirSync(out)).toEqual([]);
    source.close();
    const packedDir = fs.mkdtempSync(path.join(tmp, 'q-packed-'));
    await writePackedCheckpoint(packedDir, [{ name: 'w', dtype: 'q4_0', shape: [1, 32], bytes: new Uint8Array(18) }]);
    const again = Checkpoint.open(packedDir);
    await expect(quantizeCheckpoint(again, out, { policy: () => 'q4_0' })).rejects.toThrow(/tensor "w": is already packed as q4_0/);
    again.close();
  });
});
