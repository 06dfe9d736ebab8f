/**
 * A training run from a config and a text corpus to a saved model folder: tokenize, split off a
 * held-out tail, pack rows, train with AdamW (warmup + cosine, clipping, accumulation), measure the
 * held-out loss, save weights, tokenizer, optimizer state, a log and the loss curve. Resumable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  byteLevelBpeFiles,
  fromPretrained,
  familyOf,
  GraniteTokenizer,
  saveCheckpoint,
  trainByteLevelBpe,
  type CausalLmBatch,
  type CausalLM,
  type CausalLMConfig,
  type TokenizerFiles,
} from '@graniteflow/granite';
import { AdamW, loadTrainerState, packTokenStream, warmupCosine, TRAINER_STATE_FILE } from '@graniteflow/train';
import {
  runTrainingLoop,
  saveRunRecord,
  type EvalReport,
  type LoopSettings,
  type StepReport,
  type TrainingHistory,
  type TrainingLoopResult,
} from './training_loop';

/** What a training run does; every field checked by the command that builds it. */
export interface TrainJobOptions extends LoopSettings {
  config: CausalLMConfig;
  /** The corpus: documents are separated by blank lines. */
  text: string;
  /** Where the model folder goes (created or, with `resume`, continued). */
  out: string;
  /** A model folder whose tokenizer to use; default a byte-level tokenizer (257 tokens). */
  tokenizerDir?: string;
  /** Instead: learn a byte-level BPE of this many tokens from the training part of the corpus. */
  vocabSize?: number;
  onStep?: (report: StepReport) => void;
  onEval?: (report: EvalReport) => void;
  /** Checked between steps: the run stops early (and saves) once it is aborted. */
  signal?: AbortSignal;
}

/** What the run did. */
export interface TrainJobResult extends TrainingLoopResult {
  /** Tokens of the corpus trained on (each epoch), and held out. */
  trainTokens: number;
  heldOutTokens: number;
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  // mulberry32: a small seeded generator, so an epoch's order is reproducible.
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The rows (seqLength + 1 tokens each) of a token stream. */
function rowsOf(stream: number[], seqLength: number): number[][] {
  const rows: number[][] = [];
  for (const batch of packTokenStream([stream], { seqLength, batchSize: 1 }))
    rows.push([...batch.inputs[0], batch.labels[0][seqLength - 1]]);
  return rows;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function batchOf(rows: readonly number[][]): CausalLmBatch {
  return { inputs: rows.map((r) => r.slice(0, -1)), labels: rows.map((r) => r.slice(1)) };
}

function readTokenizerFiles(dir: string): TokenizerFiles {
  const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>;
  return { 'tokenizer.json': read('tokenizer.json'), 'tokenizer_config.json': read('tokenizer_config.json') };
}

/** Runs the training job; see {@link TrainJobOptions}. */
export async function runTrainJob(options: TrainJobOptions): Promise<TrainJobResult> {
  const { config, out, steps, batchSize, accumulate, seqLength } = options;
  const bpeText = options.text.slice(0, Math.floor(options.text.length * (1 - options.heldOutFraction)));
  const tokenizerFiles: TokenizerFiles | undefined =
    options.tokenizerDir !== undefined
      ? undefined
      : options.resume && fs.existsSync(path.join(out, 'tokenizer.json'))
        ? readTokenizerFiles(out) // the run's own tokenizer, not a new one
        : byteLevelBpeFiles(options.vocabSize === undefined ? [] : trainByteLevelBpe(bpeText, { vocabSize: options.vocabSize }));
  const tokenizer =
    options.tokenizerDir !== undefined
      ? await GraniteTokenizer.fromFolder(options.tokenizerDir)
      : GraniteTokenizer.fromJSON(tokenizerFiles!['tokenizer.json'], tokenizerFiles!['tokenizer_config.json']);
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new RangeError(
      `The tokenizer has ${tokenizer.vocabSize} tokens but the config's vocab_size is ${config.vocab_size}: raise vocab_size to at least ${tokenizer.vocabSize}.`,
    );
  }
  const eos = tokenizer.eosTokenId;
  const documents = options.text.split(/\n[ \t]*\n/).filter((d) => d.trim() !== '');
  if (documents.length === 0) throw new RangeError('The corpus holds no text.');
  const stream: number[] = [];
  for (const doc of documents) {
    if (stream.length > 0 && eos !== undefined) stream.push(eos);
    for (const id of tokenizer.encode(doc)) stream.push(id);
  }
  const heldOutTokens = Math.floor(stream.length * options.heldOutFraction);
  const trainStream = stream.slice(0, stream.length - heldOutTokens);
  const trainRows = rowsOf(trainStream, seqLength);
  const heldRows =
    heldOutTokens > seqLength ? rowsOf(stream.slice(stream.length - heldOutTokens), seqLength).slice(0, options.evalRows) : [];
  const rowsPerStep = batchSize * accumulate;
  if (trainRows.length < rowsPerStep) {
    throw new RangeError(
      `The corpus gives ${trainRows.length} training rows of ${seqLength} tokens (${trainStream.length} tokens), fewer than one step needs (${rowsPerStep} = --batch × --accumulate): use more text or a smaller --seq / --batch.`,
    );
  }
  const heldBytes = heldRows.reduce((sum, r) => sum + Buffer.byteLength(tokenizer.decode(r.slice(1)), 'utf8'), 0);

  let model: CausalLM;
  const optimizer = new AdamW({ learningRate: options.learningRate, weightDecay: options.weightDecay });
  let history: TrainingHistory = { train: [], heldOut: [], trainTokens: 0, seconds: 0, options: {} };
  try {
    if (options.resume) {
      if (!fs.existsSync(path.join(out, TRAINER_STATE_FILE)))
        throw new Error(`--resume: ${out} holds no ${TRAINER_STATE_FILE} (no saved run to continue).`);
      model = (await fromPretrained(out, { backend: tf.getBackend() })).model;
      const state = loadTrainerState(out, model, optimizer);
      history = { ...history, ...(state as unknown as Partial<TrainingHistory>) };
    } else {
      model = familyOf(config).createModel(config, { seed: options.seed });
    }
  } catch (err) {
    optimizer.dispose();
    throw err;
  }
  const { text: _text, config: _config, onStep: _s, onEval: _e, signal: _g, ...recorded } = options;
  history.options = { ...recorded, textBytes: Buffer.byteLength(options.text, 'utf8') };
  let order: number[][] = [];
  let orderEpoch = -1;
  const microBatches = (step: number): CausalLmBatch[] =>
    Array.from({ length: accumulate }, (_, m) => {
      const rows: number[][] = [];
      for (let r = 0; r < batchSize; r++) {
        const k = step * rowsPerStep + m * batchSize + r;
        const epoch = Math.floor(k / trainRows.length);
        // Each epoch visits the rows in its own seeded order: the same run on resume.
        if (epoch !== orderEpoch) {
          order = shuffled(trainRows, options.seed + epoch);
          orderEpoch = epoch;
        }
        rows.push(order[k % trainRows.length]);
      }
      return batchOf(rows);
    });
  const save = async (h: TrainingHistory): Promise<string[]> => {
    const written = await saveCheckpoint(
      model,
      out,
      options.tokenizerDir !== undefined ? { tokenizerFrom: options.tokenizerDir } : { tokenizer: tokenizerFiles },
    );
    return [...written, ...saveRunRecord(out, model, optimizer, h, { title: `${path.basename(path.resolve(out))}: loss by step` })];
  };
  try {
    const result = await runTrainingLoop({
      model,
      optimizer,
      steps,
      schedule: warmupCosine({
        peak: options.learningRate,
        min: options.minLearningRate,
        warmupSteps: options.warmupSteps,
        totalSteps: steps,
      }),
      maxGradNorm: options.maxGradNorm,
      microBatches,
      heldOut: heldRows.length > 0 ? { batches: chunks(heldRows, batchSize).map(batchOf), bytes: heldBytes } : null,
      evalEvery: options.evalEvery,
      saveEvery: options.saveEvery,
      save,
      history,
      onStep: options.onStep,
      onEval: options.onEval,
      signal: options.signal,
    });
    return { ...result, trainTokens: trainStream.length, heldOutTokens };
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}
