/** `graniteflow train`: a Granite hybrid from a config.json, trained on a text file, saved as a model folder. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '@graniteflow/core';
import { ConfigError, parseConfig } from '@graniteflow/granite';
import { COMMON_OPTIONS, flag, formatHelp, numberOption, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { runTrainJob, type TrainJobOptions } from '../training/train_job';
import { TrainingProgress } from '../training/training_progress';
import type { Command } from './common';

const OPTIONS: OptionTable = {
  config: { type: 'string', value: 'FILE', description: 'the model: a Granite 4.0-H config.json (granitemoehybrid), e.g. a released one with smaller sizes' },
  data: { type: 'string', value: 'FILE', description: 'the corpus, UTF-8 text; blank lines separate documents' },
  out: { type: 'string', value: 'DIR', description: 'the model folder to write (weights, config, tokenizer, optimizer state, training_log.json, loss.svg)' },
  tokenizer: { type: 'string', value: 'DIR', description: "use this model folder's tokenizer (default: byte-level, 257 tokens)" },
  'vocab-size': { type: 'string', value: 'N', description: 'instead, learn a byte-level BPE tokenizer of N tokens from the corpus (N ≤ the config\'s vocab_size)' },
  steps: { type: 'string', value: 'N', description: 'optimizer steps (default 200)' },
  batch: { type: 'string', value: 'B', description: 'rows per micro-batch (default 8)' },
  accumulate: { type: 'string', value: 'K', description: 'micro-batches per step, gradients averaged (default 1)' },
  seq: { type: 'string', value: 'T', description: 'tokens per row (default 128)' },
  lr: { type: 'string', value: 'R', description: 'peak learning rate of AdamW (default 3e-3)' },
  'min-lr': { type: 'string', value: 'R', description: 'learning rate the cosine decays to (default lr / 10)' },
  warmup: { type: 'string', value: 'N', description: 'steps of linear warmup (default 5% of --steps)' },
  'weight-decay': { type: 'string', value: 'W', description: 'decoupled weight decay of the matrices (default 0.1)' },
  clip: { type: 'string', value: 'C', description: 'clip gradients to this global norm (default 1)' },
  'held-out': { type: 'string', value: 'F', description: 'fraction of the corpus (its end) kept out of training for the held-out loss (default 0.02)' },
  'eval-every': { type: 'string', value: 'N', description: 'measure the held-out loss every N steps (default --steps / 10)' },
  'eval-rows': { type: 'string', value: 'N', description: 'held-out rows measured (default 64)' },
  'save-every': { type: 'string', value: 'N', description: 'also save the folder every N steps (default: at the end only)' },
  seed: { type: 'string', value: 'S', description: 'seed of the initial weights and of the data order (default 0)' },
  resume: { type: 'boolean', description: 'continue the run saved in --out (its weights, optimizer state and step) up to --steps' },
  backend: { type: 'string', value: 'NAME', description: 'native, wasm or cpu (default: the fastest available)' },
  ...COMMON_OPTIONS,
};

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${what} ${file} cannot be read: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message}.`, 'train');
  }
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train a Granite hybrid from a config.json on a text corpus',
  help: () =>
    formatHelp(
      'graniteflow train --config CONFIG.json --data corpus.txt --out DIR [options]',
      'Trains a new model with the architecture of CONFIG.json (initialized as transformers does) on the text of corpus.txt: ' +
        'AdamW with decoupled weight decay, linear warmup then cosine decay, gradient clipping and accumulation, rows packed from the ' +
        'token stream. Prints step, loss, tokens/s and ETA, measures the loss on a held-out tail of the corpus, and writes DIR as a ' +
        'Hugging Face model folder that generate, chat and transformers load, with training_log.json and loss.svg (the loss curve).',
      OPTIONS,
      [
        'graniteflow train --config tiny.json --data bible.txt --out ./bible-model --steps 2000',
        'graniteflow train --config tiny.json --data bible.txt --out ./bible-model --steps 4000 --resume',
        'graniteflow generate --model ./bible-model "In the beginning"',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('train', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(trainCommand.help());
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`train takes no positional arguments (got "${positionals[0]}"); give files with --config, --data and --out.`, 'train');
    const resume = flag(values, 'resume');
    const out = stringOption(values, 'out');
    const dataFile = stringOption(values, 'data');
    let configFile = stringOption(values, 'config');
    if (out === undefined) throw new UsageError('train needs --out DIR, the model folder to write.', 'train');
    if (dataFile === undefined) throw new UsageError('train needs --data FILE, the text to train on.', 'train');
    if (configFile === undefined && resume) configFile = path.join(out, 'config.json');
    if (configFile === undefined) throw new UsageError('train needs --config CONFIG.json, the model to build.', 'train');
    if (!resume && fs.existsSync(path.join(out, 'trainer_state.json'))) {
      throw new UsageError(`${out} already holds a training run: pass --resume to continue it, or choose another --out.`, 'train');
    }
    let config;
    try {
      config = parseConfig(JSON.parse(readText(configFile, 'The config')), configFile);
    } catch (err) {
      if (err instanceof SyntaxError) throw new UsageError(`${configFile} is not valid JSON: ${err.message}.`, 'train');
      if (err instanceof ConfigError) throw new UsageError(err.message, 'train');
      throw err;
    }
    const text = readText(dataFile, 'The corpus');
    const tokenizerDir = stringOption(values, 'tokenizer');
    if (tokenizerDir !== undefined && !fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
      throw new UsageError(`--tokenizer ${tokenizerDir} has no tokenizer.json.`, 'train');
    }
    if (tokenizerDir !== undefined && values['vocab-size'] !== undefined) throw new UsageError('Give --tokenizer or --vocab-size, not both.', 'train');
    const int = (name: string, fallback: number, min = 1) => numberOption('train', values, name, { min, integer: true }) ?? fallback;
    const num = (name: string, fallback: number, min = 0, max = Infinity) => numberOption('train', values, name, { min, max }) ?? fallback;
    const steps = int('steps', 200);
    const lr = num('lr', 3e-3);
    const options: TrainJobOptions = {
      config,
      text,
      out,
      tokenizerDir,
      vocabSize: numberOption('train', values, 'vocab-size', { min: 257, max: 65536, integer: true }),
      steps,
      batchSize: int('batch', 8),
      accumulate: int('accumulate', 1),
      seqLength: int('seq', 128, 2),
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
      resume,
    };
    if (options.warmupSteps >= steps) throw new UsageError(`--warmup (${options.warmupSteps}) must be less than --steps (${steps}).`, 'train');
    if (options.minLearningRate > lr) throw new UsageError(`--min-lr (${options.minLearningRate}) must not exceed --lr (${lr}).`, 'train');
    const backend = await initBackend(stringOption(values, 'backend'));
    const progress = new TrainingProgress(io.stderr, flag(values, 'quiet'));
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    try {
      const result = await runTrainJob({ ...options, signal: controller.signal, onStep: (r) => progress.step(r), onEval: (r) => progress.heldOut(r) });
      progress.done();
      io.stdout.write(
        `${out}: ${result.steps} steps on ${backend} in ${result.seconds.toFixed(0)} s; training loss ${result.finalLoss.toFixed(3)}` +
          (result.heldOut ? `, held-out ${result.heldOut.loss.toFixed(3)} nats/token (${result.heldOut.lossPerByte.toFixed(3)} nats/byte)` : '') +
          `; wrote ${result.files.join(', ')}\n`,
      );
      return 0;
    } finally {
      process.removeListener('SIGINT', stop);
    }
  },
};
