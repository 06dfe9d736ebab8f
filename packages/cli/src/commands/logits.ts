/** `graniteflow logits`: the float32 logits of a token sequence as a .npy file, to compare implementations. */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeNpy } from '@graniteflow/core';
import type { GraniteModel } from '@graniteflow/granite';
import { COMMON_OPTIONS, flag, formatHelp, MODEL_OPTIONS, parseCommandArgs, parseIdList, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { requireTokenizer } from '../text_generation';
import { DTYPE_OPTIONS, loadFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  ids: { type: 'string', value: '1,2,3', description: 'input token ids, comma-separated' },
  text: { type: 'string', value: 'TEXT', description: "input text, tokenized with the model's tokenizer (instead of --ids)" },
  out: { type: 'string', short: 'o', value: 'FILE', description: 'output .npy file (default logits.npy)' },
  ...COMMON_OPTIONS,
};

/** Logits [T, V] (float32) of one sequence, from a full forward pass without cache. */
export async function computeLogits(
  model: Pick<GraniteModel, 'model' | 'config'>,
  ids: readonly number[],
): Promise<{ shape: [number, number]; data: Float32Array }> {
  const logits = tf.tidy(() => {
    const input = tf.tensor2d([...ids], [1, ids.length], 'int32');
    return model.model.forward(input, { logits: 'all' }).logits!; // [1, T, V]
  });
  try {
    const data = (await logits.data()) as Float32Array;
    return { shape: [ids.length, model.config.vocab_size], data: Float32Array.from(data) };
  } finally {
    logits.dispose();
  }
}

export const logitsCommand: Command = {
  name: 'logits',
  summary: 'write the float32 logits [T, V] of token ids as a .npy file',
  help: () =>
    formatHelp(
      'graniteflow logits [--model M] (--ids 1,2,3 | --text TEXT) [--out file.npy]',
      'Runs one forward pass and writes the logits (float32, shape [T, vocab_size], NumPy .npy format 1.0), for checking against other implementations.',
      OPTIONS,
      [
        'graniteflow logits --model ./my-model --ids 1,2,3 --out logits.npy',
        'python -c "import numpy; print(numpy.load(\'logits.npy\').shape)"',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('logits', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(logitsCommand.help());
      return 0;
    }
    if (positionals.length)
      throw new UsageError(`logits takes no positional arguments (got "${positionals[0]}"); use --ids or --text.`, 'logits');
    const idsArg = stringOption(values, 'ids');
    const text = stringOption(values, 'text');
    if ((idsArg === undefined) === (text === undefined))
      throw new UsageError('logits needs exactly one of --ids 1,2,3 or --text "…".', 'logits');
    const givenIds = idsArg !== undefined ? parseIdList('logits', 'ids', idsArg) : undefined;
    const out = path.resolve(stringOption(values, 'out') ?? 'logits.npy');

    const { model } = await loadFromArgs(values, io, { command: 'logits' });
    try {
      const ids = givenIds ?? requireTokenizer(model).encode(text!);
      if (ids.length === 0) throw new UsageError('--text encodes to no tokens.', 'logits');
      const bad = ids.find((id) => id >= model.config.vocab_size);
      if (bad !== undefined) throw new UsageError(`Token id ${bad} is outside the vocabulary [0, ${model.config.vocab_size}).`, 'logits');
      const logits = await computeLogits(model, ids);
      writeNpy(out, { shape: logits.shape, data: logits.data });
      if (!flag(values, 'quiet')) io.stderr.write(`Wrote float32 logits [${logits.shape.join(', ')}] to ${out}\n`);
      io.stdout.write(`${out}\n`);
      return 0;
    } finally {
      model.dispose();
    }
  },
};
