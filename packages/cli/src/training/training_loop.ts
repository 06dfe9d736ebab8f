/**
 * The loop both `train` and `finetune` run: steps of AdamW over the micro-batches a data source
 * gives, the learning rate from a schedule, the held-out loss now and then, saves, progress.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { causalLmLoss, IGNORE_INDEX, type CausalLmBatch, type CausalLM } from '@graniteflow/granite';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Module } from '@graniteflow/core';
import { OPTIMIZER_FILE, saveTrainerState, trainStep, TRAINER_STATE_FILE, type AdamW, type LearningRateSchedule } from '@graniteflow/train';
import { lossCurveSvg, type LossCurveOptions, type LossPoint } from './loss_curve_svg';

/** The hyper-parameters of a run (`train` and `finetune` read them from the same options). */
export interface LoopSettings {
  steps: number;
  /** Rows per micro-batch. */
  batchSize: number;
  /** Micro-batches per step. */
  accumulate: number;
  /** Tokens per row (at most, for conversations). */
  seqLength: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  weightDecay: number;
  maxGradNorm: number;
  /** Fraction of the data (its end) kept out of training to measure the held-out loss. */
  heldOutFraction: number;
  /** Measure the held-out loss every this many steps (and at the end). */
  evalEvery: number;
  /** At most this many held-out rows are measured. */
  evalRows: number;
  /** Save the folder every this many steps (and at the end); 0 = only at the end. */
  saveEvery: number;
  seed: number;
  /** Continue from the trainer state in the output folder. */
  resume: boolean;
}

/** Progress after one step. */
export interface StepReport {
  step: number;
  steps: number;
  loss: number;
  gradNorm: number;
  learningRate: number;
  /** Tokens (input positions) per second over the steps of this run so far. */
  tokensPerSecond: number;
  /** Milliseconds left at that rate. */
  etaMs: number;
}

/** A held-out measurement. */
export interface EvalReport {
  step: number;
  /** Mean nats per held-out label. */
  loss: number;
  /** The same nats spread over the UTF-8 bytes of those labels (comparable across tokenizers). */
  lossPerByte: number;
}

/** What trainer_state.json keeps besides the step: the run's record, also written as training_log.json. */
export interface TrainingHistory {
  train: LossPoint[];
  heldOut: EvalReport[];
  /** Input positions trained on so far. */
  trainTokens: number;
  seconds: number;
  options: Record<string, unknown>;
}

/** The held-out data: batches and the UTF-8 bytes their counted labels decode to. */
export interface HeldOut {
  batches: CausalLmBatch[];
  bytes: number;
}

export interface TrainingLoopOptions {
  model: CausalLM;
  optimizer: AdamW;
  steps: number;
  schedule: LearningRateSchedule;
  maxGradNorm: number;
  /** What to train (default: the model's trainable variables). */
  variables?: () => tf.Variable[];
  /** The micro-batches of step `step` (0-based). */
  microBatches(step: number): CausalLmBatch[];
  heldOut: HeldOut | null;
  evalEvery: number;
  saveEvery: number;
  /** Writes the run's folder (weights, state, log); returns the files written. */
  save(history: TrainingHistory): Promise<string[]>;
  history: TrainingHistory;
  onStep?: (report: StepReport) => void;
  onEval?: (report: EvalReport) => void;
  signal?: AbortSignal;
}

export interface TrainingLoopResult {
  steps: number;
  finalLoss: number;
  heldOut: EvalReport | null;
  seconds: number;
  files: string[];
}

function countedLabels(batch: CausalLmBatch): number {
  let n = 0;
  for (const row of batch.labels) for (const l of row) if (l !== IGNORE_INDEX) n++;
  return n;
}

/** Mean held-out loss (no gradients, no aux loss) per counted label and per byte. */
export function heldOutLoss(model: CausalLM, heldOut: HeldOut): { loss: number; lossPerByte: number } {
  let nats = 0;
  let labels = 0;
  for (const batch of heldOut.batches) {
    const n = countedLabels(batch);
    if (n === 0) continue;
    const loss = causalLmLoss(model, batch, { auxLossCoef: 0 });
    nats += loss.dataSync()[0] * n;
    labels += n;
    loss.dispose();
  }
  return { loss: nats / labels, lossPerByte: nats / heldOut.bytes };
}

/**
 * Writes what a run keeps beside its weights in `out`: the optimizer state of `trained` and the
 * trainer state, training_log.json and loss.svg. Returns those files' names.
 */
export function saveRunRecord(out: string, trained: Module, optimizer: AdamW, history: TrainingHistory, curve: LossCurveOptions): string[] {
  saveTrainerState(out, trained, optimizer, history as unknown as Record<string, unknown>);
  fs.writeFileSync(path.join(out, 'loss.svg'), lossCurveSvg(history.train, history.heldOut, curve));
  fs.writeFileSync(path.join(out, 'training_log.json'), `${JSON.stringify(history, null, 2)}\n`);
  return [OPTIMIZER_FILE, TRAINER_STATE_FILE, 'loss.svg', 'training_log.json'];
}

/** Runs steps from the optimizer's step count up to `steps`, then measures and saves. */
export async function runTrainingLoop(o: TrainingLoopOptions): Promise<TrainingLoopResult> {
  const { model, optimizer, history } = o;
  let files: string[] = [];
  const evaluate = (step: number): EvalReport | null => {
    if (o.heldOut === null || o.heldOut.batches.length === 0) return null;
    const report = { step, ...heldOutLoss(model, o.heldOut) };
    history.heldOut.push(report);
    o.onEval?.(report);
    return report;
  };
  const started = performance.now();
  const secondsBefore = history.seconds;
  let step = optimizer.iterations;
  const firstStep = step;
  let tokensThisRun = 0;
  let lastLoss = NaN;
  while (step < o.steps && !o.signal?.aborted) {
    const micro = o.microBatches(step);
    const learningRate = o.schedule(step);
    const result = trainStep(optimizer, micro, (b) => causalLmLoss(model, b), {
      variables: o.variables ? o.variables() : model.trainableVariables(),
      maxGradNorm: o.maxGradNorm,
      learningRate,
    });
    step++;
    lastLoss = result.loss;
    const tokens = micro.reduce((sum, b) => sum + b.inputs.length * (b.inputs[0]?.length ?? 0), 0);
    tokensThisRun += tokens;
    history.trainTokens += tokens;
    history.train.push({ step, loss: result.loss });
    const elapsed = (performance.now() - started) / 1000;
    history.seconds = secondsBefore + elapsed;
    const tokensPerSecond = tokensThisRun / Math.max(elapsed, 1e-9);
    const msPerStep = (elapsed * 1000) / (step - firstStep);
    o.onStep?.({
      step,
      steps: o.steps,
      loss: result.loss,
      gradNorm: result.gradNorm,
      learningRate,
      tokensPerSecond,
      etaMs: msPerStep * (o.steps - step),
    });
    if (step % o.evalEvery === 0 && step < o.steps) evaluate(step);
    if (o.saveEvery > 0 && step % o.saveEvery === 0 && step < o.steps) files = await o.save(history);
  }
  const final = evaluate(step);
  files = await o.save(history);
  return { steps: step, finalLoss: lastLoss, heldOut: final, seconds: history.seconds, files };
}
