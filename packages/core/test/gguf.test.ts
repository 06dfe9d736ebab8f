import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GgufError,
  ggufValue,
  quantizeRows,
  readGgufHeader,
  readGgufTensorBytes,
  writeGguf,
  type GgufTensor,
  type GgufValue,
} from '../src';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-test-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A tensor whose bytes are given up front, handed to the sink in pieces of `piece` bytes. */
function tensorOf(name: string, type: GgufTensor['type'], shape: number[], bytes: Uint8Array, piece = bytes.length): GgufTensor {
  return {
    name,
    type,
    shape,
    write(dst) {
      for (let at = 0; at < bytes.length; at += piece) dst.write(bytes.subarray(at, Math.min(at + piece, bytes.length)));
    },
  };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('writeGguf', () => {
  test('writes exactly the bytes gguf.h describes (a hand-assembled file)', async () => {
    const file = path.join(dir, 'tiny.gguf');
    const data = new Uint8Array(new Float32Array([1.5, -2, 3.25, 4, 5, 6]).buffer);
    await writeGguf(file, [['a.count', ggufValue.u32(7)]], [tensorOf('w', 'F32', [2, 3], data)]);

    // Assembled here from the format description alone: magic, version, counts, the two KV pairs
    // (ours and the general.alignment the writer adds), the tensor info with dims in ggml order
    // (ne[0] = 3 first), padding to 32, the data, padding to 32.
    const parts: Buffer[] = [];
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      parts.push(b);
    };
    const u64 = (v: number) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(v));
      parts.push(b);
    };
    const str = (s: string) => {
      u64(Buffer.byteLength(s));
      parts.push(Buffer.from(s, 'utf8'));
    };
    parts.push(Buffer.from('GGUF', 'ascii'));
    u32(3);
    u64(1); // tensors
    u64(2); // kv pairs
    str('a.count');
    u32(4);
    u32(7);
    str('general.alignment');
    u32(4);
    u32(32);
    str('w');
    u32(2);
    u64(3);
    u64(2);
    u32(0);
    u64(0);
    let expected = Buffer.concat(parts);
    expected = Buffer.concat([expected, Buffer.alloc((32 - (expected.length % 32)) % 32)]);
    expected = Buffer.concat([expected, Buffer.from(data), Buffer.alloc(32 - data.length)]);

    expect(fs.readFileSync(file).equals(expected)).toBe(true);
  });

  test('metadata of every type reads back as written', async () => {
    const file = path.join(dir, 'meta.gguf');
    const metadata: [string, GgufValue][] = [
      ['general.architecture', ggufValue.string('granitehybrid')],
      ['k.u8', ggufValue.u8(255)],
      ['k.i8', ggufValue.i8(-128)],
      ['k.u16', ggufValue.u16(65535)],
      ['k.i16', ggufValue.i16(-32768)],
      ['k.u32', ggufValue.u32(4294967295)],
      ['k.i32', ggufValue.i32(-2147483648)],
      ['k.u64', ggufValue.u64(18446744073709551615n)],
      ['k.i64', ggufValue.i64(-9223372036854775808n)],
      ['k.f32', ggufValue.f32(Math.fround(0.1))],
      ['k.f64', ggufValue.f64(0.1)],
      ['k.bool.true', ggufValue.bool(true)],
      ['k.bool.false', ggufValue.bool(false)],
      ['k.unicode', ggufValue.string('Ġhé 🚀\n"q"')],
      ['k.empty', ggufValue.string('')],
      ['k.strings', ggufValue.array('string', ['<|end_of_text|>', 'Ġ Ġ', '', 'ü'])],
      ['k.i32s', ggufValue.array('i32', [0, -1, 5, 2147483647])],
      ['k.u32s', ggufValue.array('u32', [0, 1, 4294967295])],
      ['k.f32s', ggufValue.array('f32', [1.5, -0.25, Math.fround(1e-5)])],
      ['k.bools', ggufValue.array('bool', [true, false, true])],
      ['k.u64s', ggufValue.array('u64', [1n, 1n << 40n])],
      ['k.empty_array', ggufValue.array('u32', [])],
    ];
    await writeGguf(file, metadata, []);
    const header = readGgufHeader(file);
    expect(header.version).toBe(3);
    expect(header.tensors).toEqual([]);
    const want = new Map<string, GgufValue>(metadata);
    want.set('general.alignment', ggufValue.u32(32));
    // 64-bit integers come back as bigints.
    expect([...header.metadata]).toEqual([...want]);
  });

  test('tensor infos and bytes round trip; every tensor starts on the alignment and padding is zero', async () => {
    const file = path.join(dir, 'tensors.gguf');
    const q8Source = Float32Array.from({ length: 3 * 64 }, (_, i) => Math.sin(i));
    const specs: [string, GgufTensor['type'], number[], Uint8Array][] = [
      ['token_embd.weight', 'F32', [5, 3], randomBytes(60, 1)],
      ['blk.0.ssm_a', 'F32', [7, 1], randomBytes(28, 2)],
      ['blk.0.ffn_up_exps.weight', 'BF16', [2, 3, 5], randomBytes(60, 3)],
      ['blk.0.half', 'F16', [9], randomBytes(18, 4)],
      ['blk.0.ssm_in.weight', 'Q8_0', [3, 64], quantizeRows('q8_0', q8Source, 3, 64)],
      ['blk.0.ssm_out.weight', 'Q4_0', [2, 32], randomBytes(36, 5)],
    ];
    await writeGguf(
      file,
      [['general.architecture', ggufValue.string('test')]],
      specs.map(([n, t, s, b]) => tensorOf(n, t, s, b, 5)),
      {
        alignment: 64,
      },
    );
    const header = readGgufHeader(file);
    expect(header.alignment).toBe(64);
    expect(header.metadata.get('general.alignment')).toEqual(ggufValue.u32(64));
    expect(header.dataOffset % 64).toBe(0);
    const raw = fs.readFileSync(file);
    let end = header.dataOffset;
    header.tensors.forEach((info, i) => {
      const [name, type, shape, bytes] = specs[i];
      expect(info).toMatchObject({ name, type, shape, ne: [...shape].reverse(), byteLength: bytes.length });
      expect(info.offset % 64).toBe(0);
      // Tensors follow each other with only zero padding between them.
      expect(raw.subarray(end, info.offset).every((b) => b === 0)).toBe(true);
      expect(Buffer.from(readGgufTensorBytes(file, info)).equals(Buffer.from(bytes))).toBe(true);
      end = info.offset + info.byteLength;
    });
    expect(raw.length % 64).toBe(0);
    expect(raw.subarray(end).every((b) => b === 0)).toBe(true);
    // Q8_0: 34-byte blocks of 32 weights.
    expect(header.tensors[4].byteLength).toBe(3 * 2 * 34);
  });

  test('a tensor far larger than the write buffer streams through it intact, in any piece sizes', async () => {
    const file = path.join(dir, 'big.gguf');
    const big = randomBytes(4 * 10_000, 9);
    const other = randomBytes(4 * 333, 10);
    let largestPiece = 0;
    const observed: GgufTensor = {
      name: 'big',
      type: 'F32',
      shape: [100, 100],
      write(dst) {
        // Irregular pieces, one of them bigger than the whole buffer.
        const cuts = [0, 1, 8, 63, 64, 65, 5000, 5001, 40_000];
        for (let i = 0; i + 1 < cuts.length; i++) {
          largestPiece = Math.max(largestPiece, cuts[i + 1] - cuts[i]);
          dst.write(big.subarray(cuts[i], cuts[i + 1]));
        }
      },
    };
    await writeGguf(file, [], [observed, tensorOf('other', 'F32', [333], other, 7)], { chunkBytes: 64 });
    expect(largestPiece).toBeGreaterThan(64);
    const header = readGgufHeader(file);
    expect(Buffer.from(readGgufTensorBytes(file, header.tensors[0])).equals(Buffer.from(big))).toBe(true);
    expect(Buffer.from(readGgufTensorBytes(file, header.tensors[1])).equals(Buffer.from(other))).toBe(true);
  });

  test('the tensor data goes to disk while it is produced, not at the end', async () => {
    const file = path.join(dir, 'stream.gguf');
    const sizesSeen: number[] = [];
    const tmpSize = () => {
      const tmp = fs.readdirSync(dir).find((f) => f.startsWith('stream.gguf.tmp-'));
      return tmp === undefined ? -1 : fs.statSync(path.join(dir, tmp)).size;
    };
    await writeGguf(
      file,
      [],
      [
        {
          name: 'w',
          type: 'F32',
          shape: [64, 256],
          write(dst) {
            for (let r = 0; r < 64; r++) {
              dst.write(new Uint8Array(1024));
              sizesSeen.push(tmpSize());
            }
          },
        },
      ],
      { chunkBytes: 4096 },
    );
    // With a 4 KiB buffer the temporary file grows during the 64 KiB tensor...
    expect(sizesSeen[sizesSeen.length - 1]).toBeGreaterThan(32 * 1024);
    // ...and the result appears only at the end, under its name.
    expect(fs.readdirSync(dir)).toEqual(['stream.gguf']);
  });

  test('async producers are awaited in order', async () => {
    const file = path.join(dir, 'async.gguf');
    const a = randomBytes(40, 1);
    const b = randomBytes(8, 2);
    const later =
      (bytes: Uint8Array): GgufTensor['write'] =>
      async (dst) => {
        await new Promise((r) => setTimeout(r, 5));
        dst.write(bytes);
      };
    await writeGguf(
      file,
      [],
      [
        { name: 'a', type: 'F32', shape: [10], write: later(a) },
        { name: 'b', type: 'F32', shape: [2], write: later(b) },
      ],
    );
    const h = readGgufHeader(file);
    expect(Buffer.from(readGgufTensorBytes(file, h.tensors[0])).equals(Buffer.from(a))).toBe(true);
    expect(Buffer.from(readGgufTensorBytes(file, h.tensors[1])).equals(Buffer.from(b))).toBe(true);
  });
});

describe('writeGguf refuses bad input and leaves nothing behind', () => {
  const cases: [string, () => Parameters<typeof writeGguf>, RegExp][] = [
    [
      'too few bytes',
      () => ['', [], [tensorOf('w', 'F32', [4], new Uint8Array(12))]],
      /tensor "w": writing its data failed: it wrote 12 bytes; F32 \[4\] is 16 bytes/,
    ],
    [
      'too many bytes',
      () => ['', [], [tensorOf('w', 'F32', [2], new Uint8Array(12))]],
      /tensor "w": writing its data failed: it was given more than its 8 bytes/,
    ],
    [
      'a Q8_0 row that is not whole blocks',
      () => ['', [], [tensorOf('q', 'Q8_0', [2, 48], new Uint8Array(0))]],
      /tensor "q": a Q8_0 row holds whole blocks of 32 weights, but the row length .* is 48/,
    ],
    [
      'a duplicate tensor',
      () => ['', [], [tensorOf('w', 'F32', [1], new Uint8Array(4)), tensorOf('w', 'F32', [1], new Uint8Array(4))]],
      /tensor "w": appears twice/,
    ],
    [
      'a name of 64 bytes',
      () => ['', [], [tensorOf('n'.repeat(64), 'F32', [1], new Uint8Array(4))]],
      /the name is 64 bytes; ggml allows at most 63/,
    ],
    ['five dimensions', () => ['', [], [tensorOf('w', 'F32', [1, 1, 1, 1, 1], new Uint8Array(4))]], /1 to 4 dimensions/],
    ['an unknown type', () => ['', [], [tensorOf('w', 'Q4_K' as never, [32], new Uint8Array(4))]], /unknown tensor type "Q4_K"/],
    ['a u32 out of range', () => ['', [['k', ggufValue.u32(-1)]], []], /metadata key "k": -1 is outside the u32 range/],
    ['a non-integer i32', () => ['', [['k', ggufValue.i32(1.5)]], []], /metadata key "k": expected an integer, got 1.5/],
    [
      'a bad array item',
      () => ['', [['toks', ggufValue.array('string', ['a', 3 as never])]], []],
      /metadata key "toks": item 1: expected a string/,
    ],
    [
      'a duplicate key',
      () => [
        '',
        [
          ['k', ggufValue.u32(1)],
          ['k', ggufValue.u32(2)],
        ],
        [],
      ],
      /metadata key "k": appears twice/,
    ],
    ['an alignment that is not a power of two', () => ['', [], [], { alignment: 24 }], /the alignment must be a power of two, got 24/],
    [
      'a producer that throws',
      () => [
        '',
        [],
        [
          {
            name: 'w',
            type: 'F32',
            shape: [1],
            write: () => {
              throw new Error('disk on fire');
            },
          },
        ],
      ],
      /tensor "w": writing its data failed: disk on fire/,
    ],
  ];
  test.each(cases)('%s', async (_label, make, message) => {
    const file = path.join(dir, 'bad.gguf');
    const [, metadata, tensors, options] = make();
    const err = await writeGguf(file, metadata, tensors, options).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GgufError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message.startsWith(file)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test('an existing file at the path survives a failed write', async () => {
    const file = path.join(dir, 'keep.gguf');
    fs.writeFileSync(file, 'previous');
    await expect(writeGguf(file, [], [tensorOf('w', 'F32', [4], new Uint8Array(2))])).rejects.toThrow(GgufError);
    expect(fs.readFileSync(file, 'utf8')).toBe('previous');
    expect(fs.readdirSync(dir)).toEqual(['keep.gguf']);
  });
});

describe('readGgufHeader', () => {
  test('names the file and what is wrong', () => {
    const notGguf = path.join(dir, 'x.gguf');
    fs.writeFileSync(notGguf, Buffer.alloc(64));
    expect(() => readGgufHeader(notGguf)).toThrow(/x\.gguf: is not a GGUF file/);
    expect(() => readGgufHeader(path.join(dir, 'missing.gguf'))).toThrow(/missing\.gguf does not exist|missing\.gguf: does not exist/);
  });

  test('a truncated file is reported, not misread', async () => {
    const file = path.join(dir, 't.gguf');
    await writeGguf(file, [['k', ggufValue.array('string', ['abc', 'def'])]], [tensorOf('w', 'F32', [64], new Uint8Array(256))]);
    const full = fs.readFileSync(file);
    fs.writeFileSync(file, full.subarray(0, 40));
    expect(() => readGgufHeader(file)).toThrow(GgufError);
    fs.writeFileSync(file, full.subarray(0, full.length - 64));
    expect(() => readGgufHeader(file)).toThrow(/tensor "w": its 256 bytes at offset \d+ run past the end of the file/);
  });
});
