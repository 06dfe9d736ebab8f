/**
 * Fine-tuning a loaded model on chat conversations (JSONL of `{"messages": [...]}`): each rendered
 * with the model's chat template, the loss on assistant tokens only, batches padded on the right.
 * Saves a model folder with the base's tokenizer files, optimizer state, log and loss curve.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  chatExample,
  padExamples,
  saveCheckpoint,
  IGNORE_INDEX,
  type CausalLmBatch,
  type ChatExample,
  type ChatMessage,
  type GraniteModel,
} from '@graniteflow/granite';
import { LoraAdapters, type Module } from '@graniteflow/core';
import { AdamW, loadTrainerState, warmupCosine, TRAINER_STATE_FILE } from '@graniteflow/train';
import {
  runTrainingLoop,
  saveRunRecord,
  type EvalReport,
  type LoopSettings,
  type StepReport,
  type TrainingHistory,
  type TrainingLoopResult,
} from './training_loop';

export interface FinetuneJobOptions extends LoopSettings {
  model: GraniteModel;
  /** Train LoRA adapters of this rank on the frozen base (which may be packed) instead of every weight. */
  loraRank?: number;
  /** LoRA's α (default 2·rank). */
  loraAlpha?: number;
  /** With LoRA: also write the base with the adapters merged in, as a model folder here. */
  mergeInto?: string;
  /** The JSONL text and its file name (named in errors). */
  data: string;
  dataSource: string;
  out: string;
  onStep?: (report: StepReport) => void;
  onEval?: (report: EvalReport) => void;
  signal?: AbortSignal;
}

export interface FinetuneJobResult extends TrainingLoopResult {
  trainExamples: number;
  heldOutExamples: number;
}

/** The conversations of a JSONL file, each checked; errors name the file and line. */
export function parseChatJsonl(text: string, source: string): ChatMessage[][] {
  const conversations: ChatMessage[][] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${source}:${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      throw new RangeError(`${where} is not valid JSON: ${(err as Error).message}.`);
    }
    const messages = (obj as { messages?: unknown })?.messages;
    if (!Array.isArray(messages) || messages.length === 0)
      throw new RangeError(`${where}: expected {"messages": [{"role": ..., "content": ...}, ...]}.`);
    messages.forEach((m, k) => {
      const role = (m as { role?: unknown })?.role;
      const content = (m as { content?: unknown })?.content;
      if (typeof role !== 'string' || typeof content !== 'string') {
        throw new RangeError(`${where}: message ${k + 1} needs a string "role" and a string "content".`);
      }
    });
    conversations.push(messages as ChatMessage[]);
  });
  if (conversations.length === 0) throw new RangeError(`${source} holds no conversations.`);
  return conversations;
}

export async function runFinetuneJob(o: FinetuneJobOptions): Promise<FinetuneJobResult> {
  const granite = o.model;
  const tokenizer = granite.tokenizer;
  if (tokenizer === null)
    throw new Error(`${granite.folder} has no tokenizer.json: fine-tuning on chat needs the model's tokenizer and chat template.`);
  const packed = [...granite.model.namedParameters()].find(([, p]) => p.packed !== null);
  if (packed && o.loraRank === undefined) {
    throw new Error(
      `${packed[0]} is held as ${packed[1].dtype}: full fine-tuning trains float32 weights; load the model without --dtype (or from a float checkpoint), or train LoRA adapters on it with --lora R.`,
    );
  }
  const conversations = parseChatJsonl(o.data, o.dataSource);
  const examples: ChatExample[] = conversations.map((messages, i) => {
    try {
      const ex = chatExample(tokenizer, messages, o.seqLength);
      if (ex.labels.every((l) => l === IGNORE_INDEX))
        throw new RangeError(`its assistant tokens start after the first ${o.seqLength} (--seq)`);
      return ex;
    } catch (err) {
      throw new RangeError(`${o.dataSource}: conversation ${i + 1}: ${(err as Error).message}`);
    }
  });
  const heldCount = o.heldOutFraction > 0 ? Math.max(examples.length >= 4 ? 1 : 0, Math.floor(examples.length * o.heldOutFraction)) : 0;
  const train = examples.slice(0, examples.length - heldCount);
  const held = examples.slice(examples.length - heldCount).slice(0, o.evalRows);
  if (train.length === 0) throw new RangeError(`${o.dataSource}: no conversation is left for training after holding out ${heldCount}.`);
  const padId = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0;
  const heldBatches: CausalLmBatch[] = [];
  for (let i = 0; i < held.length; i += o.batchSize) heldBatches.push(padExamples(held.slice(i, i + o.batchSize), padId));
  const heldBytes = held.reduce(
    (sum, ex) => sum + Buffer.byteLength(tokenizer.decode(ex.labels.filter((l) => l !== IGNORE_INDEX)), 'utf8'),
    0,
  );

  const model = granite.model;
  const resuming = o.resume && fs.existsSync(path.join(o.out, TRAINER_STATE_FILE));
  if (o.resume && !resuming) throw new Error(`--resume: ${o.out} holds no ${TRAINER_STATE_FILE} (no saved run to continue).`);
  // With LoRA the adapters are what trains (and what a resumed run reads back); the base stays frozen.
  const adapters =
    o.loraRank === undefined
      ? null
      : resuming
        ? LoraAdapters.load(model, o.out)
        : LoraAdapters.attach(model, { rank: o.loraRank, alpha: o.loraAlpha, seed: o.seed });
  const trained: Module = adapters ?? model;
  const optimizer = new AdamW({ learningRate: o.learningRate, weightDecay: o.weightDecay });
  let history: TrainingHistory = { train: [], heldOut: [], trainTokens: 0, seconds: 0, options: {} };
  if (resuming) {
    const state = loadTrainerState(o.out, trained, optimizer);
    history = { ...history, ...(state as unknown as Partial<TrainingHistory>) };
  }
  const { model: _m, data: _d, onStep: _s, onEval: _e, signal: _g, ...recorded } = o;
  history.options = { ...recorded, base: granite.folder };
  const rowsPerStep = o.batchSize * o.accumulate;
  const microBatches = (step: number): CausalLmBatch[] =>
    Array.from({ length: o.accumulate }, (_, m) => {
      const rows: ChatExample[] = [];
      for (let r = 0; r < o.batchSize; r++) rows.push(train[(step * rowsPerStep + m * o.batchSize + r + o.seed) % train.length]);
      return padExamples(rows, padId);
    });
  const save = async (h: TrainingHistory): Promise<string[]> => {
    const written = adapters
      ? adapters.save(o.out, { baseModel: granite.folder })
      : await saveCheckpoint(model, o.out, { tokenizerFrom: granite.folder });
    const curve = {
      title: `${path.basename(path.resolve(o.out))}: fine-tuning loss by step`,
      yLabel: 'loss on assistant tokens (nats/token)',
    };
    return [...written, ...saveRunRecord(o.out, trained, optimizer, h, curve)];
  };
  try {
    const result = await runTrainingLoop({
      model,
      optimizer,
      steps: o.steps,
      schedule: warmupCosine({ peak: o.learningRate, min: o.minLearningRate, warmupSteps: o.warmupSteps, totalSteps: o.steps }),
      maxGradNorm: o.maxGradNorm,
      variables: () => trained.trainableVariables(),
      microBatches,
      heldOut: heldBatches.length > 0 ? { batches: heldBatches, bytes: heldBytes } : null,
      evalEvery: o.evalEvery,
      saveEvery: o.saveEvery,
      save,
      history,
      onStep: o.onStep,
      onEval: o.onEval,
      signal: o.signal,
    });
    if (adapters && o.mergeInto !== undefined) {
      adapters.merge();
      result.files.push(
        ...(await saveCheckpoint(model, o.mergeInto, { tokenizerFrom: granite.folder })).map((f) => path.join(o.mergeInto!, f)),
      );
    }
    return { ...result, trainExamples: train.length, heldOutExamples: held.length };
  } finally {
    optimizer.dispose();
  }
}
