/** `graniteflow train`: a Granite hybrid from a config.json, trained on a text file, saved as a model folder. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend, isBackendAvailable, type BackendName } from '@graniteflow/core';
import { ConfigError, modelFamily, UnsupportedModelError } from '@graniteflow/granite';
import { COMMON_OPTIONS, flag, formatHelp, numberOption, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { runTrainJob, type TrainJobOptions } from '../training/train_job';
import type { Command } from './common';
import { loopOptions, loopSettingsFromArgs, readTextFile, withTrainingProgress } from './training_args';

const OPTIONS: OptionTable = {
  config: {
    type: 'string',
    value: 'FILE',
    description: 'the model: a config.json of a supported model_type (e.g. a Granite 4.0-H one, granitemoehybrid, with smaller sizes)',
  },
  data: { type: 'string', value: 'FILE', description: 'the corpus, UTF-8 text; blank lines separate documents' },
  out: {
    type: 'string',
    value: 'DIR',
    description: 'the model folder to write (weights, config, tokenizer, optimizer state, training_log.json, loss.svg)',
  },
  tokenizer: { type: 'string', value: 'DIR', description: "use this model folder's tokenizer (default: byte-level, 257 tokens)" },
  'vocab-size': {
    type: 'string',
    value: 'N',
    description: "instead, learn a byte-level BPE tokenizer of N tokens from the corpus (N ≤ the config's vocab_size)",
  },
  ...loopOptions({ steps: 200, lr: '3e-3', seq: 128 }),
  backend: {
    type: 'string',
    value: 'NAME',
    description: 'native, wasm or cpu (default: GRANITEFLOW_BACKEND, else wasm, the fastest for training today)',
  },
  ...COMMON_OPTIONS,
};

/**
 * wasm unless GRANITEFLOW_BACKEND says otherwise: native, the inference default, runs many of the
 * backward pass's ops through tfjs-backend-cpu's JavaScript (`npm run bench -w @graniteflow/train`).
 */
function trainingBackend(): BackendName | undefined {
  if (process.env.GRANITEFLOW_BACKEND) return undefined;
  return isBackendAvailable('wasm') ? 'wasm' : undefined;
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
    if (positionals.length > 0)
      throw new UsageError(
        `train takes no positional arguments (got "${positionals[0]}"); give files with --config, --data and --out.`,
        'train',
      );
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
      const raw = JSON.parse(readTextFile('train', configFile, 'The config'));
      // A config without model_type is Granite 4.0's, as transformers' GraniteMoeHybridConfig reads it.
      config = modelFamily(raw?.model_type ?? 'granitemoehybrid', configFile).parseConfig(raw, configFile);
    } catch (err) {
      if (err instanceof SyntaxError) throw new UsageError(`${configFile} is not valid JSON: ${err.message}.`, 'train');
      if (err instanceof ConfigError || err instanceof UnsupportedModelError) throw new UsageError(err.message, 'train');
      throw err;
    }
    const text = readTextFile('train', dataFile, 'The corpus');
    const tokenizerDir = stringOption(values, 'tokenizer');
    if (tokenizerDir !== undefined && !fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
      throw new UsageError(`--tokenizer ${tokenizerDir} has no tokenizer.json.`, 'train');
    }
    if (tokenizerDir !== undefined && values['vocab-size'] !== undefined)
      throw new UsageError('Give --tokenizer or --vocab-size, not both.', 'train');
    const options: TrainJobOptions = {
      config,
      text,
      out,
      tokenizerDir,
      vocabSize: numberOption('train', values, 'vocab-size', { min: 257, max: 65536, integer: true }),
      ...loopSettingsFromArgs('train', values, { steps: 200, lr: 3e-3, seq: 128 }),
      resume,
    };
    const backend = await initBackend(stringOption(values, 'backend') ?? trainingBackend());
    const result = await withTrainingProgress(io, flag(values, 'quiet'), (hooks) => runTrainJob({ ...options, ...hooks }));
    io.stdout.write(
      `${out}: ${result.steps} steps on ${backend} in ${result.seconds.toFixed(0)} s; training loss ${result.finalLoss.toFixed(3)}` +
        (result.heldOut
          ? `, held-out ${result.heldOut.loss.toFixed(3)} nats/token (${result.heldOut.lossPerByte.toFixed(3)} nats/byte)`
          : '') +
        `; wrote ${result.files.join(', ')}\n`,
    );
    return 0;
  },
};
