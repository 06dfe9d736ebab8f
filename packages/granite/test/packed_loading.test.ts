// Loading packed checkpoints: the golden checkpoints quantized to q8_0 / q4_0 (core
// quantizeCheckpoint with granite's policy, as `graniteflow quantize` does) load on every backend
// as the same model as quantizing at load; mapped in place on cpu / native; errors name the file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Checkpoint,
  dequantizeRowsInto,
  nativeAddon,
  PackedTensor,
  quantizeCheckpoint,
  writePackedCheckpoint,
  type PackedFormat,
} from '@graniteflow/core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import { estimateMemory, fromPretrained, parseConfig, planWeightDtypes, type GraniteModel, type LoadNote } from '../src';
import { GOLDEN_MODELS, loadGolden, maxDiffAtRealPositions } from './golden_fixtures';

const FORMATS: readonly PackedFormat[] = ['q8_0', 'q4_0'];

let scratch: string;
beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-packed-load-'));
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** `source` quantized to `format` into a new folder (config and tokenizer files copied), as the cli does. */
async function quantizeFolder(source: string, format: PackedFormat, name: string): Promise<string> {
  const out = path.join(scratch, name);
  fs.mkdirSync(out);
  const checkpoint = Checkpoint.open(source);
  try {
    const plan = planWeightDtypes(
      checkpoint.names().map((n) => [n, checkpoint.info(n).shape] as const),
      { dtype: format },
    );
    await quantizeCheckpoint(checkpoint, out, { policy: (n) => plan.dtypes.get(n) ?? 'f32' });
  } finally {
    checkpoint.close();
  }
  for (const file of fs.readdirSync(source)) {
    if (file.endsWith('.json') && file !== 'model.safetensors.index.json') fs.copyFileSync(path.join(source, file), path.join(out, file));
  }
  return out;
}

function logitsOf(granite: GraniteModel, inputIds: number[][], mask: number[][]): Float32Array {
  return tf.tidy(() => {
    const ids = tf.tensor2d(inputIds, undefined, 'int32');
    const m = tf.tensor2d(mask, undefined, 'float32');
    return granite.model.forward(ids, { attentionMask: m }).logits!.dataSync() as Float32Array;
  });
}

/** The policy's dtype of each tensor of the checkpoint in `folder` at `format`. */
function planFor(folder: string, format: PackedFormat): Map<string, string> {
  const checkpoint = Checkpoint.open(folder);
  try {
    const shapes = checkpoint.names().map((n) => [n, checkpoint.info(n).packed?.shape ?? checkpoint.info(n).shape] as const);
    return planWeightDtypes(shapes, { dtype: format }).dtypes;
  } finally {
    checkpoint.close();
  }
}

const packedFolders = new Map<string, string>();
async function packedFolder(name: string, format: PackedFormat): Promise<string> {
  const key = `${name}-${format}`;
  if (!packedFolders.has(key)) packedFolders.set(key, await quantizeFolder(loadGolden(name).dir, format, key));
  return packedFolders.get(key)!;
}

for (const name of GOLDEN_MODELS) {
  describeBackends(`packed checkpoint: golden ${name}`, (backend) => {
    const golden = loadGolden(name);
    const { input_ids: inputIds, attention_mask: mask } = golden.inputs;

    describe.each(FORMATS)('%s', (format) => {
      let packed: GraniteModel;
      let atLoad: GraniteModel;
      const notes: LoadNote[] = [];
      beforeAll(async () => {
        const folder = await packedFolder(name, format);
        packed = await fromPretrained(folder, { backend, onNote: (n) => notes.push(n) });
        // Mapped weights stay in row order; quantized at load they would be interleaved on native,
        // a different kernel whose float rounding can flip an activation's int8 rounding downstream.
        process.env.GRANITEFLOW_INTERLEAVE = '0';
        try {
          atLoad = await fromPretrained(golden.dir, { backend, dtype: format });
        } finally {
          delete process.env.GRANITEFLOW_INTERLEAVE;
        }
      });
      afterAll(() => {
        packed.dispose();
        atLoad.dispose();
      });

      it('holds each weight in the dtype quantizing at load gives it, with nothing to note', () => {
        const expected = atLoad.weightDtypes();
        expect([...packed.weightDtypes()]).toEqual([...expected]);
        expect([...expected.values()].filter((d) => d === format).length).toBeGreaterThan(10);
        expect(packed.weightSummary()[0]).toMatchObject({ dtype: format });
        expect(notes).toEqual([]);
      });

      it('holds the same packed bytes as quantizing at load', () => {
        const reference = new Map(atLoad.model.namedParameters());
        for (const [param, p] of packed.model.namedParameters()) {
          if (p.packed === null) continue;
          const ref = reference.get(param)!.packed!.readBytes();
          expect([param, Buffer.compare(Buffer.from(p.packed.readBytes()), Buffer.from(ref))]).toEqual([param, 0]);
        }
      });

      it('gives the logits of fromPretrained(original, { dtype }) (same bytes, same kernels)', () => {
        const diff = maxDiffAtRealPositions(
          logitsOf(packed, inputIds, mask),
          logitsOf(atLoad, inputIds, mask),
          mask,
          packed.config.vocab_size,
        );
        expect(diff).toBeLessThanOrEqual(1e-6);
      });

      it('maps the packed weights in place on cpu / native with the addon, and reads them elsewhere', () => {
        const source = packed.weightsSource;
        const packedParams = [...packed.model.namedParameters()].filter(([, p]) => p.packed !== null).map(([, p]) => p.packed!);
        const packedBytes = packedParams.reduce((n, p) => n + p.byteLength, 0);
        expect(source.packedCheckpoint).toBe(true);
        const mappable = nativeAddon() !== null && (backend === 'cpu' || backend === 'native');
        expect(source.mapped).toBe(mappable);
        if (mappable) {
          expect(source.mappedBytes).toBe(packedBytes);
          // Views of the file's mapping: buffers larger than any one weight, shared between weights.
          const buffers = new Set(packedParams.map((p) => (p.bytes.dataSync() as Int32Array).buffer));
          const largest = Math.max(...packedParams.map((p) => p.byteLength));
          expect(buffers.size).toBeLessThan(packedParams.length);
          for (const b of buffers) expect(b.byteLength).toBeGreaterThan(largest);
        } else {
          expect(source.mappedBytes).toBe(0);
          expect(source.notMappedReason).toEqual(expect.any(String));
        }
      });

      it('leaks no tensor after a generation', async () => {
        await expectNoTensorLeak(async () => {
          for await (const _ of packed.generate(golden.inputs.prompts[1], { maxNewTokens: 4, temperature: 0.8, topK: 20, seed: 1 })) void _;
        }, `generation from the ${format} checkpoint`);
      });
    });

    it('repacks with a note when asked for another dtype: the stored values, dequantized and packed again', async () => {
      const folder = await packedFolder(name, 'q8_0');
      const notes: LoadNote[] = [];
      const repacked = await fromPretrained(folder, { backend, dtype: 'q4_0', onNote: (n) => notes.push(n) });
      const checkpoint = Checkpoint.open(folder);
      try {
        const sorted = (dtypes: Map<string, string>, d: string) =>
          [...dtypes]
            .filter(([, x]) => x === d)
            .map(([k]) => k)
            .sort();
        expect(sorted(repacked.weightDtypes(), 'q4_0')).toEqual(sorted(planFor(folder, 'q8_0'), 'q8_0'));
        for (const [param, p] of repacked.model.namedParameters()) {
          if (p.packed === null) continue;
          const info = checkpoint.info(param);
          const values = new Float32Array(p.size);
          dequantizeRowsInto(
            'q8_0',
            checkpoint.readBytes(param),
            p.shape[p.shape.length - 1],
            0,
            values.length / p.shape[p.shape.length - 1],
            values,
          );
          const expected = PackedTensor.fromFloats('q4_0', info.packed!.shape, values);
          expect([param, Buffer.compare(Buffer.from(p.packed.readBytes()), Buffer.from(expected.readBytes()))]).toEqual([param, 0]);
          expected.dispose();
        }
        expect(notes.map((n) => n.kind)).toEqual(['dtype']);
        expect(notes[0].message).toMatch(/q8_0 → q4_0/);
        expect(notes[0].message).toContain(folder);
      } finally {
        checkpoint.close();
        repacked.dispose();
      }
    });
  });
}

describe('packed checkpoint: memory estimate and errors', () => {
  const golden = loadGolden('tiny_moe');
  const config = parseConfig(JSON.parse(fs.readFileSync(path.join(golden.dir, 'config.json'), 'utf8')));

  it('counts the packed bytes as stored, and those a mapping holds', async () => {
    const folder = await packedFolder('tiny_moe', 'q4_0');
    const checkpoint = Checkpoint.open(folder);
    const stored = new Map(checkpoint.names().map((n) => [n, checkpoint.info(n).packed?.format ?? ('f32' as const)]));
    // The bytes the file holds for packed weights, and float32 for the rest (held as float32).
    let expectedWeights = 0;
    let expectedMapped = 0;
    for (const n of checkpoint.names()) {
      const info = checkpoint.info(n);
      if (info.packed) {
        expectedWeights += info.byteLength;
        expectedMapped += info.byteLength;
      } else {
        expectedWeights += 4 * info.shape.reduce((a, b) => a * b, 1);
      }
    }
    checkpoint.close();
    const e = estimateMemory(config, { storedDtypes: stored, mapped: true });
    expect(e.dtype).toBe('q4_0');
    expect(e.weightBytes).toBe(expectedWeights);
    expect(e.mappedWeightBytes).toBe(expectedMapped);
    expect(e.totalBytes).toBeGreaterThan(e.weightBytes);
    expect(estimateMemory(config, { storedDtypes: stored }).mappedWeightBytes).toBe(0);
    expect(e.weightBytesByDtype.q4_0).toBe(estimateMemory(config, { dtype: 'q4_0' }).weightBytes);
  });

  it('names the file and tensor when the packed shape metadata does not match the stored bytes', async () => {
    const folder = await quantizeFolder(golden.dir, 'q8_0', 'corrupt-metadata');
    const file = path.join(folder, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + headerLength).toString('utf8');
    // The first packed weight whose rows and columns differ.
    const match = [...header.matchAll(/"(graniteflow\.shape\.([^"]+))":"\[(\d+),(\d+)\]"/g)].find((m) => m[3] !== m[4]);
    expect(match).toBeDefined();
    const [entry, key, tensor, rows, cols] = match!;
    // Rows and columns swapped: the same length, a shape the stored rows cannot hold.
    const corrupted = header.replace(entry, `"${key}":"[${cols},${rows}]"`);
    expect(corrupted.length).toBe(header.length);
    Buffer.from(corrupted, 'utf8').copy(bytes, 8);
    fs.writeFileSync(file, bytes);
    const error = await fromPretrained(folder, { backend: 'cpu' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toContain(file);
    expect(error?.message).toContain(tensor);
    expect(error?.message).not.toMatch(/\n\s+at /);
  });

  it('reports a packed weight of the wrong logical shape with the missing and unexpected ones, by logical shape', async () => {
    const folder = path.join(scratch, 'misshaped');
    fs.mkdirSync(folder);
    fs.copyFileSync(path.join(golden.dir, 'config.json'), path.join(folder, 'config.json'));
    const source = Checkpoint.open(golden.dir);
    const names = source.names();
    const wrong = 'model.layers.0.shared_mlp.input_linear.weight';
    const dropped = 'model.norm.weight';
    const shapeOf = (n: string) => source.info(n).shape;
    const tensors = names
      .filter((n) => n !== dropped)
      .map((n) => {
        const shape = n === wrong ? [shapeOf(n)[0] * 2, shapeOf(n)[1]] : shapeOf(n);
        return {
          name: n,
          dtype: n === wrong ? ('q8_0' as const) : ('F32' as const),
          shape,
          bytes: new Uint8Array(n === wrong ? (shape[0] * shape[1] * 34) / 32 : 4 * shape.reduce((a, b) => a * b, 1)),
        };
      });
    tensors.push({ name: 'model.extra.weight', dtype: 'F32', shape: [4], bytes: new Uint8Array(16) });
    source.close();
    await writePackedCheckpoint(folder, tensors);
    const before = tf.memory().numTensors;
    const error = await fromPretrained(folder, { backend: 'cpu' }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error).not.toBeNull();
    const message = error!.message;
    expect(message).toContain(folder);
    expect(message).toContain(dropped);
    expect(message).toContain('model.extra.weight');
    expect(message).toContain(wrong);
    expect(message).toContain(`${wrong} expected [${shapeOf(wrong)}] got [${shapeOf(wrong)[0] * 2},${shapeOf(wrong)[1]}]`);
    expect(tf.memory().numTensors).toBe(before);
  });
});
