/** Options and checks `train` and `finetune` share: the loop's hyper-parameters, files, progress and Ctrl-C. */
import * as fs from 'node:fs';
import { flag, numberOption, type OptionTable, type ParsedArgs } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import type { EvalReport, LoopSettings, StepReport } from '../training/training_loop';
import { TrainingProgress } from '../training/training_progress';

/** The loop's options, with the defaults each command gives in its help. */
export function loopOptions(defaults: { steps: number; lr: string; seq: number }): OptionTable {
  return {
    steps: { type: 'string', value: 'N', description: `optimizer steps (default ${defaults.steps})` },
    batch: { type: 'string', value: 'B', description: 'rows per micro-batch (default 8)' },
    accumulate: { type: 'string', value: 'K', description: 'micro-batches per step, gradients averaged (default 1)' },
    seq: { type: 'string', value: 'T', description: `tokens per row at most (default ${defaults.seq})` },
    lr: { type: 'string', value: 'R', description: `peak learning rate of AdamW (default ${defaults.lr})` },
    'min-lr': { type: 'string', value: 'R', description: 'learning rate the cosine decays to (default lr / 10)' },
    warmup: { type: 'string', value: 'N', description: 'steps of linear warmup (default 5% of --steps)' },
    'weight-decay': { type: 'string', value: 'W', description: 'decoupled weight decay of the matrices (default 0.1)' },
    clip: { type: 'string', value: 'C', description: 'clip gradients to this global norm (default 1)' },
    'held-out': {
      type: 'string',
      value: 'F',
      description: 'fraction of the data (its end) kept out of training for the held-out loss (default 0.02)',
    },
    'eval-every': { type: 'string', value: 'N', description: 'measure the held-out loss every N steps (default --steps / 10)' },
    'eval-rows': { type: 'string', value: 'N', description: 'held-out rows measured (default 64)' },
    'save-every': { type: 'string', value: 'N', description: 'also save the folder every N steps (default: at the end only)' },
    seed: { type: 'string', value: 'S', description: 'seed of the data order (and of new weights) (default 0)' },
    resume: { type: 'boolean', description: 'continue the run saved in --out (its weights, optimizer state and step) up to --steps' },
  };
}

/** The loop's settings from the options of {@link loopOptions}, checked. */
export function loopSettingsFromArgs(
  command: string,
  values: ParsedArgs['values'],
  defaults: { steps: number; lr: number; seq: number },
): LoopSettings {
  const int = (name: string, fallback: number, min = 1) => numberOption(command, values, name, { min, integer: true }) ?? fallback;
  const num = (name: string, fallback: number, min = 0, max = Infinity) => numberOption(command, values, name, { min, max }) ?? fallback;
  const steps = int('steps', defaults.steps);
  const lr = num('lr', defaults.lr);
  const s: LoopSettings = {
    steps,
    batchSize: int('batch', 8),
    accumulate: int('accumulate', 1),
    seqLength: int('seq', defaults.seq, 2),
    learningRate: lr,
    minLearningRate: num('min-lr', lr / 10),
    warmupSteps: int('warmup', Math.max(1, Math.round(steps * 0.05)), 0),
    weightDecay: num('weight-decay', 0.1),
    maxGradNorm: num('clip', 1, 1e-12),
    heldOutFraction: num('held-out', 0.02, 0, 0.5),
    evalEvery: int('eval-every', Math.max(1, Math.round(steps / 10))),
    evalRows: int('eval-rows', 64),
    saveEvery: int('save-every', 0, 0),
    seed: int('seed', 0, 0),
    resume: flag(values, 'resume'),
  };
  if (s.warmupSteps >= steps) throw new UsageError(`--warmup (${s.warmupSteps}) must be less than --steps (${steps}).`, command);
  if (s.minLearningRate > lr) throw new UsageError(`--min-lr (${s.minLearningRate}) must not exceed --lr (${lr}).`, command);
  return s;
}

/** A text file's contents, or a usage error naming it and why it cannot be read. */
export function readTextFile(command: string, file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `${what} ${file} cannot be read: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message}.`,
      command,
    );
  }
}

/**
 * Runs a training job with progress on stderr (unless --quiet) and Ctrl-C stopping it after the
 * current step (the job then saves what it has).
 */
export async function withTrainingProgress<T>(
  io: CliIO,
  quiet: boolean,
  job: (hooks: { signal: AbortSignal; onStep: (r: StepReport) => void; onEval: (r: EvalReport) => void }) => Promise<T>,
): Promise<T> {
  const progress = new TrainingProgress(io.stderr, quiet);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  try {
    const result = await job({ signal: controller.signal, onStep: (r) => progress.step(r), onEval: (r) => progress.heldOut(r) });
    progress.done();
    return result;
  } finally {
    process.removeListener('SIGINT', stop);
  }
}
