/** `graniteflow finetune`: a model trained further on chat conversations, the loss on assistant tokens only. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMON_OPTIONS, flag, formatHelp, MODEL_OPTIONS, numberOption, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { runFinetuneJob } from '../training/finetune_job';
import { DTYPE_OPTIONS, loadFromArgs, type Command } from './common';
import { loopOptions, loopSettingsFromArgs, readTextFile, withTrainingProgress } from './training_args';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  data: {
    type: 'string',
    value: 'FILE',
    description: 'JSONL, one conversation a line: {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}',
  },
  out: {
    type: 'string',
    value: 'DIR',
    description: 'the model folder to write (weights, config, tokenizer, optimizer state, training_log.json, loss.svg)',
  },
  lora: {
    type: 'string',
    value: 'R',
    description:
      'train LoRA adapters of rank R on the frozen base instead of every weight (the base may be packed: --dtype q4_0); saved in PEFT layout',
  },
  'lora-alpha': { type: 'string', value: 'A', description: 'LoRA α: the adapters are scaled by α / R (default 2R)' },
  'merge-into': {
    type: 'string',
    value: 'DIR',
    description: 'with --lora: at the end also write the base with the adapters merged in, as a model folder',
  },
  ...DTYPE_OPTIONS,
  ...loopOptions({ steps: 100, lr: '1e-4', seq: 1024 }),
  ...COMMON_OPTIONS,
};

export const finetuneCommand: Command = {
  name: 'finetune',
  summary: 'fine-tune a model on chat conversations (JSONL), learning the assistant turns',
  help: () =>
    formatHelp(
      'graniteflow finetune --model M --data chats.jsonl --out DIR [options]',
      "Trains every weight of the model further on conversations rendered with its chat template; the loss counts the assistant turns' " +
        'tokens only (their text and end of turn), so the model learns to answer, not to write the questions. AdamW, warmup then cosine ' +
        'decay, clipping, accumulation; conversations are cut to --seq tokens and batched with right padding. A held-out tail of the file ' +
        "measures the loss on unseen answers. DIR becomes a model folder (with the base model's tokenizer and chat template) that " +
        'generate, chat and transformers load, plus optimizer state for --resume, training_log.json and loss.svg.',
      OPTIONS,
      [
        'graniteflow finetune --model ./granite-4.0-h-micro --data support.jsonl --out ./micro-support --steps 300',
        'graniteflow chat --model ./micro-support',
        'graniteflow finetune --model ./granite-4.0-h-micro --dtype q4_0 --lora 16 --data support.jsonl --out ./support-lora --merge-into ./micro-support',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('finetune', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(finetuneCommand.help());
      return 0;
    }
    if (positionals.length > 0)
      throw new UsageError(
        `finetune takes no positional arguments (got "${positionals[0]}"); give files with --model, --data and --out.`,
        'finetune',
      );
    const out = stringOption(values, 'out');
    const dataFile = stringOption(values, 'data');
    if (out === undefined) throw new UsageError('finetune needs --out DIR, the model folder to write.', 'finetune');
    if (dataFile === undefined) throw new UsageError('finetune needs --data FILE, the conversations (JSONL).', 'finetune');
    const loraRank = numberOption('finetune', values, 'lora', { min: 1, integer: true });
    const loraAlpha = numberOption('finetune', values, 'lora-alpha', { min: 1e-12 });
    const mergeInto = stringOption(values, 'merge-into');
    if (loraRank === undefined && (loraAlpha !== undefined || mergeInto !== undefined))
      throw new UsageError('--lora-alpha and --merge-into go with --lora R.', 'finetune');
    if (loraRank === undefined && values.dtype !== undefined)
      throw new UsageError('--dtype (a packed base) needs --lora R: full fine-tuning trains float32 weights.', 'finetune');
    const settings = loopSettingsFromArgs('finetune', values, { steps: 100, lr: loraRank === undefined ? 1e-4 : 1e-3, seq: 1024 });
    if (!settings.resume && fs.existsSync(path.join(out, 'trainer_state.json'))) {
      throw new UsageError(`${out} already holds a training run: pass --resume to continue it, or choose another --out.`, 'finetune');
    }
    const data = readTextFile('finetune', dataFile, 'The conversations file');
    // A resumed full fine-tune continues from its own weights in --out; a LoRA run from its base and the adapters in --out.
    const modelArgs = settings.resume && loraRank === undefined ? { ...values, model: out } : values;
    const { model } = await loadFromArgs(modelArgs, io, { command: 'finetune' });
    try {
      const result = await withTrainingProgress(io, flag(values, 'quiet'), (hooks) =>
        runFinetuneJob({ ...settings, model, data, dataSource: dataFile, out, loraRank, loraAlpha, mergeInto, ...hooks }),
      );
      io.stdout.write(
        `${out}: ${result.steps} steps on ${model.backend} in ${result.seconds.toFixed(0)} s over ${result.trainExamples} conversations; ` +
          `training loss ${result.finalLoss.toFixed(3)}` +
          (result.heldOut
            ? `, held-out ${result.heldOut.loss.toFixed(3)} nats/token on ${result.heldOutExamples} unseen conversations`
            : '') +
          `; wrote ${result.files.join(', ')}\n`,
      );
      return 0;
    } finally {
      model.model.dispose();
    }
  },
};
