import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpoint,
  SafetensorsError,
  SafetensorsFile,
  floatToBf16,
  halfToFloat,
  floatToHalf,
  writeSafetensors,
  initBackend,
  previewJson,
} from '../src';
import { GOLDEN } from './fixtures';

/** An independent, deliberately naive parse of a safetensors file: the whole file in memory. */
function naiveParse(file: string): Map<string, { dtype: string; shape: number[]; raw: Buffer }> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  const out = new Map();
  for (const [name, e] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    out.set(name, { dtype: e.dtype, shape: e.shape, raw: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
  }
  return out;
}

function expectedFloats(dtype: string, raw: Buffer): number[] {
  const out: number[] = [];
  if (dtype === 'F32') for (let i = 0; i < raw.length; i += 4) out.push(raw.readFloatLE(i));
  else if (dtype === 'BF16') {
    const tmp = Buffer.alloc(4);
    for (let i = 0; i < raw.length; i += 2) {
      tmp.writeUInt16LE(0, 0);
      tmp.writeUInt16LE(raw.readUInt16LE(i), 2);
      out.push(tmp.readFloatLE(0));
    }
  } else throw new Error(`fixture dtype ${dtype}`);
  return out;
}

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-st-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('golden checkpoints', () => {
  it.each([
    ['micro_dense', 'F32', 1],
    ['tiny_moe', 'BF16', 2],
    ['chat_tiny', 'BF16', 1],
  ])('%s (%s, %i file(s)) loads every tensor exactly', (folder, dtype, shards) => {
    const dir = path.join(GOLDEN, folder);
    const ckpt = Checkpoint.open(dir);
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
    expect(files).toHaveLength(shards);
    const expected = new Map<string, { dtype: string; shape: number[]; raw: Buffer }>();
    for (const f of files) for (const [k, v] of naiveParse(path.join(dir, f))) expected.set(k, v);
    expect(new Set(ckpt.names())).toEqual(new Set(expected.keys()));
    for (const [name, e] of expected) {
      expect(e.dtype).toBe(dtype);
      const t = ckpt.read(name);
      expect(t.shape).toEqual(e.shape);
      expect(t.dtype).toBe('float32');
      expect(Array.from(t.data)).toEqual(expectedFloats(e.dtype, e.raw));
    }
    ckpt.close();
  });

  it('reads a tensor as a tfjs tensor', () => {
    const ckpt = Checkpoint.open(path.join(GOLDEN, 'micro_dense'));
    const t = ckpt.readTensor('model.norm.weight');
    expect(t.shape).toEqual([64]);
    t.dispose();
    ckpt.close();
  });
});

describe('writer round trip', () => {
  it('writes and reads every dtype', () => {
    const file = path.join(tmp, 'all.safetensors');
    const f = [1.5, -2.25, 3e-3, 65504, 0];
    writeSafetensors(
      file,
      {
        f32: { shape: [5], data: Float32Array.from(f) },
        bf16: { shape: [5], data: Float32Array.from(f), dtype: 'BF16' },
        f16: { shape: [5], data: Float32Array.from(f), dtype: 'F16' },
        i32: { shape: [2, 2], data: Int32Array.from([1, -2, 3, 2147483647]) },
        i64: { shape: [2], data: [5, -7], dtype: 'I64' },
        i8: { shape: [2], data: [-128, 127], dtype: 'I8' },
        u8: { shape: [2], data: [0, 255], dtype: 'U8' },
        bool: { shape: [3], data: Uint8Array.from([1, 0, 1]) },
        empty: { shape: [0, 3], data: new Float32Array(0) },
      },
      { metadata: { format: 'pt' } },
    );
    const r = SafetensorsFile.open(file);
    expect(r.metadata).toEqual({ format: 'pt' });
    expect(Array.from(r.read('f32').data)).toEqual(Array.from(Float32Array.from(f)));
    const bf = Float32Array.from(f);
    const bfBits = floatToBf16(bf);
    expect(Array.from(r.read('bf16').data)).toEqual(Array.from(bfBits).map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]));
    expect(Array.from(r.read('f16').data)).toEqual(f.map((x) => halfToFloat(floatToHalf(x))));
    expect(r.read('i32')).toEqual({ dtype: 'int32', shape: [2, 2], data: Int32Array.from([1, -2, 3, 2147483647]) });
    expect(Array.from(r.read('i64').data)).toEqual([5, -7]);
    expect(Array.from(r.read('i8').data)).toEqual([-128, 127]);
    expect(Array.from(r.read('u8').data)).toEqual([0, 255]);
    expect(r.read('bool')).toEqual({ dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) });
    expect(r.read('empty').shape).toEqual([0, 3]);
    r.close();
  });

  it('writes tfjs tensors and leaves no temporary file', () => {
    const file = path.join(tmp, 'tf.safetensors');
    const a = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    writeSafetensors(file, { a });
    a.dispose();
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const t = SafetensorsFile.open(file).read('a');
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4]);
  });

  it('half conversion handles subnormals, infinities and rounding', () => {
    // biome-ignore lint/suspicious/noApproximativeNumericConstant: any value with many mantissa bits; not meant as π
    for (const x of [0, -0, 1, 0.1, 65504, 6e-8, 1e-5, -3.14159]) {
      expect(Math.abs(halfToFloat(floatToHalf(x)) - x)).toBeLessThanOrEqual(Math.max(Math.abs(x) * 1e-3, 6e-8));
    }
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });
});

/** Builds a file from a header object and a data section, bypassing the writer's checks. */
function rawFile(name: string, header: unknown, data: Buffer, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

describe('corrupt files', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, () => string, RegExp, string | undefined][] = [
    [
      'shorter than 8 bytes',
      () => {
        const f = path.join(tmp, 'short.safetensors');
        fs.writeFileSync(f, Buffer.alloc(3));
        return f;
      },
      /shorter than the 8-byte header length/,
      undefined,
    ],
    [
      'header length beyond file size',
      () => rawFile('len.safetensors', ok, Buffer.alloc(8), 10_000n),
      /header length 10000 exceeds/,
      undefined,
    ],
    ['header not JSON', () => rawFile('json.safetensors', '{"a": [', Buffer.alloc(8)), /not valid JSON/, undefined],
    [
      'header not JSON, across lines',
      () => rawFile('json2.safetensors', '{\n "a": tru\n}', Buffer.alloc(8)),
      /header is not valid JSON: Unexpected token .* is not valid JSON$/,
      undefined,
    ],
    ['header not an object', () => rawFile('arr.safetensors', '[1,2]', Buffer.alloc(8)), /not a JSON object/, undefined],
    [
      'unknown dtype',
      () => rawFile('dtype.safetensors', { a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, Buffer.alloc(2)),
      /unsupported dtype "F8_E4M3"/,
      'a',
    ],
    [
      'bad shape',
      () => rawFile('shape.safetensors', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)),
      /not a list of non-negative integers/,
      'a',
    ],
    [
      'shape against byte length',
      () => rawFile('bytes.safetensors', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)),
      /needs 12 bytes but data_offsets \[0, 8\] hold 8/,
      'a',
    ],
    [
      'offsets past the end',
      () => rawFile('oob.safetensors', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)),
      /run past the end of the data section \(8 bytes\)/,
      'a',
    ],
    [
      'offsets reversed',
      () => rawFile('rev.safetensors', { a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, Buffer.alloc(8)),
      /begin <= end/,
      'a',
    ],
    [
      'overlapping tensors',
      () =>
        rawFile(
          'overlap.safetensors',
          { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
          Buffer.alloc(12),
        ),
      /overlap those of "a"/,
      'b',
    ],
    [
      'metadata not strings',
      () => rawFile('meta.safetensors', { __metadata__: { x: 1 }, ...ok }, Buffer.alloc(8)),
      /__metadata__\.x must be a string/,
      undefined,
    ],
    [
      'bytes after the last tensor',
      () => rawFile('trailing.safetensors', ok, Buffer.alloc(12)),
      /holds 12 bytes but the tensors cover 8 \(the last, "a", ends there\): 4 trailing bytes belong to no tensor/,
      undefined,
    ],
    [
      'data but no tensors',
      () => rawFile('notensors.safetensors', {}, Buffer.alloc(4)),
      /holds 4 bytes but the tensors cover 0: 4 trailing bytes/,
      undefined,
    ],
    [
      'a gap between tensors',
      () =>
        rawFile(
          'gap.safetensors',
          { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } },
          Buffer.alloc(20),
        ),
      /start at 12, leaving bytes \[8, 12\) of the data section to no tensor \(after "a"\)/,
      'b',
    ],
    [
      'a gap before the first tensor',
      () => rawFile('gap0.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12)),
      /leaving bytes \[0, 4\) of the data section to no tensor/,
      'a',
    ],
    [
      'a tensor named twice',
      () =>
        rawFile(
          'dup.safetensors',
          '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
          Buffer.alloc(8),
        ),
      /appears more than once in the header/,
      'a',
    ],
    [
      'a tensor named twice, once with an escape',
      () =>
        rawFile(
          'dupesc.safetensors',
          '{ "ab" : {"dtype":"F32","shape":[1],"data_offsets":[0,4]} ,\n "\\u0061b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
          Buffer.alloc(8),
        ),
      /appears more than once in the header/,
      'ab',
    ],
    [
      'a dtype nested 20,000 deep',
      () =>
        rawFile(
          'deep.safetensors',
          `{"a":{"dtype":${'['.repeat(20_000)}${']'.repeat(20_000)},"shape":[0],"data_offsets":[0,0]}}`,
          Buffer.alloc(0),
        ),
      /unsupported dtype \[\[\[\[\[\.\.\.\]\]\]\]\]; expected one of/,
      'a',
    ],
    [
      'a shape of 200,000 entries',
      () =>
        rawFile('longshape.safetensors', { a: { dtype: 'F32', shape: Array(200_000).fill('1'), data_offsets: [0, 4] } }, Buffer.alloc(4)),
      /shape \["1","1",.*\.\.\. is not a list/,
      'a',
    ],
    [
      '__metadata__ twice',
      () =>
        rawFile(
          'dupmeta.safetensors',
          '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{}}',
          Buffer.alloc(8),
        ),
      /appears more than once in the header/,
      '__metadata__',
    ],
  ];
  it.each(cases)('%s', (_label, make, message, tensor) => {
    const file = make();
    let caught: unknown;
    try {
      SafetensorsFile.open(file);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    const err = caught as SafetensorsError;
    expect(err.file).toBe(file);
    expect(err.message).toContain(file);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
    expect(err.tensor).toBe(tensor);
  });

  it('a tensor name with a newline or quotes is escaped: the message stays one line', () => {
    const file = rawFile('newline.safetensors', { 'a\n"b"': 7 }, Buffer.alloc(0));
    expect(() => SafetensorsFile.open(file)).toThrow(`${file}: tensor "a\\n\\"b\\"": header entry is not an object`);
    const long = rawFile('longname.safetensors', { ['n'.repeat(10_000)]: 7 }, Buffer.alloc(0));
    expect(() => SafetensorsFile.open(long)).toThrow(/tensor "n{197}\.\.\.": header entry is not an object/);
  });

  it('repeated keys inside entries and string values with braces are not duplicates', () => {
    const header = '{"__metadata__":{"k":"{\\"a\\": [1, 2]}","a":"a"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"dtype2":"a"}}';
    const r = SafetensorsFile.open(rawFile('nodup.safetensors', header, Buffer.alloc(8)));
    expect(r.names()).toEqual(['a']);
    expect(r.metadata).toEqual({ k: '{"a": [1, 2]}', a: 'a' });
    r.close();
  });

  it.each([
    ['one byte short', -1n, /1 trailing bytes belong to no tensor \(wrong header length/],
    ['one byte long', 1n, /run past the end of the data section|not valid JSON/],
  ])('a real file whose header length is %s names the file', (_label, delta, message) => {
    const buf = Buffer.from(fs.readFileSync(path.join(GOLDEN, 'micro_dense', 'model.safetensors')));
    buf.writeBigUInt64LE(buf.readBigUInt64LE(0) + delta);
    const file = path.join(tmp, `len${delta}.safetensors`);
    fs.writeFileSync(file, buf);
    expect(() => SafetensorsFile.open(file)).toThrow(SafetensorsError);
    expect(() => SafetensorsFile.open(file)).toThrow(message);
    expect(() => SafetensorsFile.open(file)).toThrow(file);
  });

  it('I64 values beyond int32 name the tensor', () => {
    const data = Buffer.alloc(8);
    data.writeBigInt64LE(1n << 40n);
    const file = rawFile('i64.safetensors', { big: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, data);
    expect(() => SafetensorsFile.open(file).read('big')).toThrow(/tensor "big".*does not fit int32/);
  });

  it('missing file, missing shard and wrong index are SafetensorsErrors', () => {
    expect(() => SafetensorsFile.open(path.join(tmp, 'nope.safetensors'))).toThrow(SafetensorsError);
    const dir = fs.mkdtempSync(path.join(tmp, 'ckpt-'));
    expect(() => Checkpoint.open(dir)).toThrow(/no model.safetensors or model.safetensors.index.json/);
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { a: { shape: [1], data: [1] } });
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
    );
    expect(() => Checkpoint.open(dir)).toThrow(/tensor "b".*does not exist/);
    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', c: 'model-00001-of-00002.safetensors' } }),
    );
    expect(() => Checkpoint.open(dir)).toThrow(/tensor "c".*does not contain it/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    expect(() => Checkpoint.open(dir)).toThrow(/no "weight_map" object/);
  });
});

describe('previewJson', () => {
  it.each([
    ['a string', 'text', '"text"'],
    ['a flat list', [1, -2, 'x', null, true], '[1,-2,"x",null,true]'],
    ['an object', { a: [1, { b: 2 }] }, '{"a":[1,{"b":2}]}'],
    ['Infinity', Infinity, 'Infinity'],
    ['deep nesting', [[[[[[1]]]]]], '[[[[[...]]]]]'],
    ['a long string', 'y'.repeat(200), `"${'y'.repeat(76)}...`],
    ['a million-entry list', Array(1e6).fill(7), `[${'7,'.repeat(38)}...`],
  ])('%s previews in at most 80 characters', (_label, value, text) => {
    expect(previewJson(value)).toBe(text);
    expect(previewJson(value).length).toBeLessThanOrEqual(80);
  });
});

describe('paths that are not regular files', () => {
  /** A checkpoint folder whose model.safetensors is made by `make`. */
  function folderWith(name: string, make: (file: string) => void): { dir: string; file: string } {
    const dir = fs.mkdtempSync(path.join(tmp, `${name}-`));
    const file = path.join(dir, 'model.safetensors');
    make(file);
    return { dir, file };
  }

  it.each([
    ['a FIFO', (f: string) => execFileSync('mkfifo', [f]), /model\.safetensors: is a FIFO \(named pipe\), expected a regular file/],
    ['a directory', (f: string) => fs.mkdirSync(f), /model\.safetensors: is a directory, expected a regular file/],
    [
      'a symbolic link loop',
      (f: string) => fs.symlinkSync('model.safetensors', f),
      /model\.safetensors: is a symbolic link loop \(ELOOP\), expected a regular file/,
    ],
    [
      'a link to nothing',
      (f: string) => fs.symlinkSync('gone.safetensors', f),
      /model\.safetensors: is a symbolic link to "gone\.safetensors", which does not exist/,
    ],
    [
      'a character device',
      (f: string) => fs.symlinkSync('/dev/zero', f),
      /model\.safetensors: is a character device, expected a regular file/,
    ],
  ])('model.safetensors that is %s is refused at once, naming the path', (label, make, message) => {
    const { dir, file } = folderWith(label.replace(/\W+/g, '-'), make);
    let caught: unknown;
    try {
      Checkpoint.open(dir);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect((caught as SafetensorsError).file).toBe(file);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).toContain(file);
  });

  it('an index that is a FIFO, and a shard that is a directory, are named', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'kinds-'));
    const index = path.join(dir, 'model.safetensors.index.json');
    execFileSync('mkfifo', [index]);
    expect(() => Checkpoint.open(dir)).toThrow(`${index}: is a FIFO (named pipe), expected a regular file`);
    fs.rmSync(index);
    fs.writeFileSync(index, JSON.stringify({ weight_map: { a: 'model-00001-of-00001.safetensors' } }));
    fs.mkdirSync(path.join(dir, 'model-00001-of-00001.safetensors'));
    expect(() => Checkpoint.open(dir)).toThrow(
      `${path.join(dir, 'model-00001-of-00001.safetensors')}: is a directory, expected a regular file`,
    );
  });
});

describe('large files', () => {
  it('reads one tensor without reading the rest of the file', () => {
    const file = path.join(tmp, 'big.safetensors');
    const big = new Float32Array(4_000_000);
    writeSafetensors(file, { small: { shape: [2], data: [7, 8] }, big: { shape: [big.length], data: big } });
    const readSpy = jest.spyOn(fs, 'readSync');
    const r = SafetensorsFile.open(file);
    expect(Array.from(r.read('small').data)).toEqual([7, 8]);
    const bytesRead = readSpy.mock.results.reduce((s, x) => s + (x.value as number), 0);
    readSpy.mockRestore();
    expect(bytesRead).toBeLessThan(4096);
    r.close();
  });
});
