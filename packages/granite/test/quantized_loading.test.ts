// Quantize at load: golden checkpoints loaded at bf16 / q8_0 / q4_0 on every backend, against the
// float32 golden logits; the streamed bytes against Parameter.pack; no float32 copy of a packed weight.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Checkpoint, initBackend, type WeightDtype } from '@graniteflow/core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import {
  convertWeights,
  fromPretrained,
  GraniteMoeHybridForCausalLM,
  loadWeights,
  parseConfig,
  planWeightDtypes,
  type GraniteModel,
  type LoadNote,
} from '../src';
import { GOLDEN_MODELS, loadGolden, maxDiffAtRealPositions } from './golden_fixtures';

const PACKED_DTYPES = ['bf16', 'q8_0', 'q4_0'] as const;

/**
 * Bounds measured on these checkpoints on cpu, wasm and native (worst of the three models, then
 * about 1.5×): max |Δlogit| bf16 0.042, q8_0 0.33, q4_0 1.92; top-1 agreement at least 100%, 87%,
 * 25%. These random-weight models are far more sensitive than trained ones (logits spread with a
 * standard deviation of 0.48 and a median top-1 margin of 0.1; weights are scaled so that every
 * part of the model moves them), so the figures say little about real checkpoints, but each
 * dtype must land in its own band: a weight packed in the wrong format, or left float32, or a
 * norm quantized, moves them out of it.
 */
const BOUNDS: Record<(typeof PACKED_DTYPES)[number], { maxDiff: number; top1: number }> = {
  bf16: { maxDiff: 0.1, top1: 0.95 },
  q8_0: { maxDiff: 0.5, top1: 0.8 },
  q4_0: { maxDiff: 3, top1: 0.2 },
};
/** A BF16 checkpoint packed as bf16 loses nothing: the golden tolerance holds. */
const LOSSLESS = 1e-4;

/** Fraction of real positions whose argmax equals the reference's. */
function top1Agreement(actual: ArrayLike<number>, expected: ArrayLike<number>, mask: number[][], width: number): number {
  let agree = 0;
  let positions = 0;
  const seq = mask[0].length;
  mask.forEach((row, b) =>
    row.forEach((m, t) => {
      if (!m) return;
      const base = (b * seq + t) * width;
      let a = 0;
      let e = 0;
      for (let i = 1; i < width; i++) {
        if (actual[base + i] > actual[base + a]) a = i;
        if (expected[base + i] > expected[base + e]) e = i;
      }
      positions++;
      if (a === e) agree++;
    }),
  );
  return agree / positions;
}

/** Which parameters the issue asks to pack: every matrix a token is multiplied by, the router excepted. */
function isPackedMatrix(name: string): boolean {
  return (
    name === 'model.embed_tokens.weight' ||
    name === 'lm_head.weight' ||
    /\.(mamba\.(in|out)_proj|self_attn\.[qkvo]_proj|(shared_mlp|block_sparse_moe)\.(input|output)_linear)\.weight$/.test(name)
  );
}

function logitsOf(granite: GraniteModel, inputIds: number[][], mask: number[][]): Float32Array {
  return tf.tidy(() => {
    const ids = tf.tensor2d(inputIds, undefined, 'int32');
    const m = tf.tensor2d(mask, undefined, 'float32');
    return granite.model.forward(ids, { attentionMask: m }).logits!.dataSync() as Float32Array;
  });
}

const figures: string[] = [];
afterAll(() => {
  // The report the issue asks for: one line per backend, model and dtype.
  console.log(`max |Δlogit| and top-1 agreement against the float32 golden logits:\n${figures.join('\n')}`);
});

for (const name of GOLDEN_MODELS) {
  describeBackends(`quantize at load: golden ${name}`, (backend) => {
    const golden = loadGolden(name);
    const { input_ids: inputIds, attention_mask: mask } = golden.inputs;
    const measured = new Map<WeightDtype, { maxDiff: number; top1: number }>();

    describe.each(PACKED_DTYPES)('%s', (dtype) => {
      let granite: GraniteModel;
      const notes: LoadNote[] = [];
      beforeAll(async () => {
        granite = await fromPretrained(golden.dir, { backend, dtype, onNote: (n) => notes.push(n) });
      });
      afterAll(() => granite.dispose());

      it('holds every matrix packed at the dtype and everything else float32, with nothing to note', () => {
        for (const [param, p] of granite.model.namedParameters()) {
          expect([param, p.dtype]).toEqual([param, isPackedMatrix(param) ? dtype : 'f32']);
        }
        expect(notes).toEqual([]);
      });

      it('stays within its band of max |Δlogit| and top-1 agreement against the float32 golden logits', () => {
        const vocab = granite.config.vocab_size;
        const logits = logitsOf(granite, inputIds, mask);
        const maxDiff = maxDiffAtRealPositions(logits, golden.logits.data, mask, vocab);
        const top1 = top1Agreement(logits, golden.logits.data, mask, vocab);
        measured.set(dtype, { maxDiff, top1 });
        figures.push(
          `  ${backend.padEnd(7)} ${name.padEnd(12)} ${dtype.padEnd(5)} max |Δlogit| ${maxDiff.toFixed(4)}  top-1 ${(100 * top1).toFixed(1)}%`,
        );
        const lossless = dtype === 'bf16' && granite.config.torch_dtype === 'bfloat16';
        expect(maxDiff).toBeLessThanOrEqual(lossless ? LOSSLESS : BOUNDS[dtype].maxDiff);
        expect(top1).toBeGreaterThanOrEqual(BOUNDS[dtype].top1);
      });

      it('matches the float32 model holding the same quantized values (cpu exactly, wasm within its int16 activations)', async () => {
        // native rounds activations to int8 blocks, as llama.cpp does: on these sensitive models that
        // moves logits as much as the weights' rounding itself, so only the band above applies there.
        if (backend === 'native') return;
        const roundTrip = await fromPretrained(golden.dir, { backend });
        for (const [param, p] of roundTrip.model.namedParameters()) {
          if (isPackedMatrix(param)) {
            p.pack(dtype);
            p.unpack();
          }
        }
        const vocab = granite.config.vocab_size;
        const diff = maxDiffAtRealPositions(logitsOf(granite, inputIds, mask), logitsOf(roundTrip, inputIds, mask), mask, vocab);
        roundTrip.dispose();
        expect(diff).toBeLessThanOrEqual(backend === 'cpu' ? 1e-4 : 5e-3);
      });

      it('streams the same bytes as Parameter.pack of the float32 load, bit for bit', async () => {
        const reference = await fromPretrained(golden.dir, { backend });
        const packed = new Map(granite.model.namedParameters());
        let compared = 0;
        for (const [param, p] of reference.model.namedParameters()) {
          if (packed.get(param)!.dtype === 'f32') continue;
          p.pack(dtype);
          const streamed = packed.get(param)!.packed!.readBytes();
          const ref = p.packed!.readBytes();
          expect([param, streamed.length]).toEqual([param, ref.length]);
          expect([param, Buffer.compare(Buffer.from(streamed), Buffer.from(ref))]).toEqual([param, 0]);
          compared++;
        }
        reference.dispose();
        expect(compared).toBeGreaterThan(10);
      });

      it('leaks no tensor after a generation', async () => {
        await expectNoTensorLeak(async () => {
          for await (const _ of granite.generate(golden.inputs.prompts[1], { maxNewTokens: 4, temperature: 0.8, topK: 20, seed: 1 }))
            void _;
        }, `generation at ${dtype}`);
      });
    });

    it('orders the dtypes: bf16 moves logits least, q4_0 most', () => {
      const [bf16, q8, q4] = PACKED_DTYPES.map((d) => measured.get(d)!.maxDiff);
      expect(bf16).toBeLessThan(q8);
      expect(q8).toBeLessThan(q4);
    });
  });
}

describe('streaming quantization', () => {
  const golden = loadGolden('tiny_moe');
  const config = parseConfig(JSON.parse(fs.readFileSync(path.join(golden.dir, 'config.json'), 'utf8')));

  /** A model loaded straight through loadWeights at `dtype`, `chunkBytes` of float32 at a time. */
  function load(dtype: WeightDtype, chunkBytes?: number): GraniteMoeHybridForCausalLM {
    const checkpoint = Checkpoint.open(golden.dir);
    const model = new GraniteMoeHybridForCausalLM(config);
    try {
      const plan = planWeightDtypes(
        [...model.namedParameters()].map(([n, p]) => [n, p.shape] as const),
        { dtype },
      );
      const keys = convertWeights(new Map(checkpoint.names().map((k) => [k, k])), config);
      loadWeights(model, checkpoint, keys, { dtypes: plan.dtypes, chunkBytes });
    } finally {
      checkpoint.close();
    }
    return model;
  }

  beforeAll(() => initBackend('cpu'));

  it('reads and decodes a packed weight a chunk at a time: no array as large as a packed weight is ever made', () => {
    // 4 rows of 64 at a time (BF16 checkpoint: 512 bytes read, 256 floats decoded). Float32 weights
    // (at most conv1d [192, 1, 4]) are read and written whole; the smallest packed weight (k_proj
    // [32, 64]) is larger than either.
    const chunkFloats = 4 * 64;
    const recorded = { floats: [] as number[], bytes: [] as number[] };
    const [OriginalFloats, OriginalBytes] = [globalThis.Float32Array, globalThis.Uint8Array];
    class RecordingFloats extends OriginalFloats {
      constructor(...args: unknown[]) {
        if (typeof args[0] === 'number') recorded.floats.push(args[0]);
        super(...(args as [number]));
      }
    }
    class RecordingBytes extends OriginalBytes {
      constructor(...args: unknown[]) {
        if (typeof args[0] === 'number') recorded.bytes.push(args[0]);
        super(...(args as [number]));
      }
    }
    globalThis.Float32Array = RecordingFloats as unknown as Float32ArrayConstructor;
    globalThis.Uint8Array = RecordingBytes as unknown as Uint8ArrayConstructor;
    let model: GraniteMoeHybridForCausalLM;
    try {
      model = load('q8_0', 4 * chunkFloats);
    } finally {
      globalThis.Float32Array = OriginalFloats;
      globalThis.Uint8Array = OriginalBytes;
    }
    const params = [...model.namedParameters()];
    const floatHeld = params.filter(([, p]) => p.dtype === 'f32').map(([, p]) => p.size);
    const smallestPacked = Math.min(...params.filter(([, p]) => p.dtype !== 'f32').map(([, p]) => p.size));
    const largestWhole = Math.max(chunkFloats, ...floatHeld);
    expect(smallestPacked).toBeGreaterThan(largestWhole);
    expect(recorded.floats).toContain(chunkFloats);
    expect(recorded.bytes).toContain(2 * chunkFloats);
    expect(Math.max(...recorded.floats)).toBeLessThanOrEqual(largestWhole);
    expect(Math.max(...recorded.bytes)).toBeLessThanOrEqual(2 * largestWhole);
    model.dispose();
  });

  it('gives the same bytes whatever the chunk (one row, a few rows, the default)', () => {
    const whole = load('q4_0');
    const oneRow = load('q4_0', 1);
    const fewRows = load('q4_0', 3 * 64 * 4 + 8);
    const byName = (m: GraniteMoeHybridForCausalLM) => new Map(m.namedParameters());
    const [a, b] = [byName(oneRow), byName(fewRows)];
    for (const [param, p] of whole.namedParameters()) {
      if (p.packed === null) continue;
      const bytes = Buffer.from(p.packed.readBytes());
      expect([param, Buffer.compare(bytes, Buffer.from(a.get(param)!.packed!.readBytes()))]).toEqual([param, 0]);
      expect([param, Buffer.compare(bytes, Buffer.from(b.get(param)!.packed!.readBytes()))]).toEqual([param, 0]);
    }
    for (const m of [whole, oneRow, fewRows]) m.dispose();
  });
});
