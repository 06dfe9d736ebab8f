/** `graniteflow generate`: one prompt in, streamed text out. */
import * as fs from 'node:fs';
import {
  COMMON_OPTIONS,
  flag,
  formatHelp,
  MODEL_OPTIONS,
  parseCommandArgs,
  SAMPLING_OPTIONS,
  stringList,
  stringOption,
  type OptionTable,
} from '../args';
import { newTiming, withTiming } from '@graniteflow/granite';
import { UsageError } from '../errors';
import { rate } from '../format';
import type { CliIO } from '../io';
import { requireTokenizer } from '../text_generation';
import { contextOf, DTYPE_OPTIONS, loadFromArgs, samplingFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  ...SAMPLING_OPTIONS,
  chat: { type: 'boolean', short: 'c', description: "wrap the prompt as a user message in the model's chat template" },
  system: { type: 'string', short: 's', value: 'TEXT', description: 'system message (implies --chat)' },
  stop: { type: 'string', multiple: true, value: 'TEXT', description: 'stop before this text' },
  json: { type: 'boolean', description: 'print one JSON object per line per event instead of plain text' },
  'prompt-file': { type: 'string', short: 'f', value: 'FILE', description: 'read the prompt from FILE (UTF-8) instead of the arguments' },
  truncate: {
    type: 'boolean',
    description: 'cut a prompt too long for the context (--ctx) from the left, saying so on stderr, instead of refusing it',
  },
  verbose: { type: 'boolean', short: 'v', description: 'print token counts and tokens per second on stderr' },
  ...COMMON_OPTIONS,
};

/** The text of --prompt-file, or a usage error naming the file and why it cannot be read. */
function readPromptFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new UsageError(`Cannot read the prompt file ${file}: ${reason}.`, 'generate');
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'generate text from a prompt, streamed as it is produced',
  help: () =>
    formatHelp(
      'graniteflow generate [options] "prompt"   (prompt "-" reads standard input)',
      "Streams the model's continuation of the prompt to stdout (greedy unless --temperature > 0 or the model's generation_config.json samples).",
      OPTIONS,
      [
        'graniteflow generate "Hello"',
        'graniteflow generate --model ibm-granite/granite-4.0-h-micro --chat "What is a state-space model?"',
        'graniteflow generate --model ibm-granite/granite-4.0-h-micro --dtype q4_0 "Hello"   (4-bit weights, 1.8 GB: fits the wasm heap)',
        'graniteflow generate -m ./my-model --temperature 0.7 --top-p 0.9 --seed 1 --max-tokens 64 "Once upon a time"',
        'graniteflow generate --json "Hello" | jq .',
        'graniteflow generate --model ./h-micro-q4_0 --ctx 131072 --prompt-file long.txt   (a 128K-token context)',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('generate', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(generateCommand.help());
      return 0;
    }
    const promptFile = stringOption(values, 'prompt-file');
    if (promptFile !== undefined && positionals.length > 0)
      throw new UsageError('Give the prompt as arguments or with --prompt-file, not both.', 'generate');
    if (promptFile === undefined && positionals.length === 0)
      throw new UsageError('generate needs a prompt, e.g. graniteflow generate "Hello".', 'generate');
    const flags = samplingFromArgs('generate', values);
    const stopStrings = stringList(values, 'stop');
    if (stopStrings.some((s) => s === '')) throw new UsageError('--stop needs a non-empty text.', 'generate');
    const system = stringOption(values, 'system');
    const chat = flag(values, 'chat') || system !== undefined;
    const json = flag(values, 'json');
    const prompt =
      promptFile !== undefined
        ? readPromptFile(promptFile)
        : positionals.length === 1 && positionals[0] === '-'
          ? await readAll(io.stdin)
          : positionals.join(' ');

    const { model, source } = await loadFromArgs(values, io, {
      command: 'generate',
      contextLength: flags.maxContext,
      prefillChunk: flags.prefillChunk,
    });
    try {
      const sampling = model.withSamplingDefaults(flags);
      requireTokenizer(model);
      const context = contextOf('generate', model, sampling.maxContext);
      sampling.maxContext = context;
      let promptIds = model.encodePrompt(prompt, { chat, system });
      if (promptIds.length === 0) throw new UsageError('The prompt is empty.', 'generate');
      const maxNew = sampling.maxNewTokens ?? 256;
      const keep = Math.max(1, context - maxNew);
      if (flag(values, 'truncate') && promptIds.length > keep) {
        if (!flag(values, 'quiet')) {
          io.stderr.write(
            `graniteflow: --truncate: the prompt has ${promptIds.length} tokens; kept its last ${keep} so that they and --max-tokens ${maxNew} fit the context of ${context}.\n`,
          );
        }
        promptIds = promptIds.slice(promptIds.length - keep);
      } else if (promptIds.length >= context) {
        throw new UsageError(
          `The prompt has ${promptIds.length} tokens but the context holds ${context} (--ctx, at most max_position_embeddings = ${model.config.max_position_embeddings}): ` +
            `shorten it, raise --ctx, or pass --truncate to keep its last ${keep} tokens.`,
          'generate',
        );
      }
      // The load budgeted memory for --ctx, or 4096 positions without it: a longer prompt is checked now, before any work.
      model.assertContextFits(Math.min(context, promptIds.length + maxNew), { prefillChunk: sampling.prefillChunk });
      if (json) io.stdout.write(`${JSON.stringify({ type: 'start', model: source.name, promptTokens: promptIds.length })}\n`);
      const timing = newTiming();
      for await (const event of withTiming(model, timing).streamText(promptIds, { ...sampling, stopStrings })) {
        if (json) {
          const line = event.type === 'done' ? { ...event, promptTokens: promptIds.length, timing } : event;
          io.stdout.write(`${JSON.stringify(line)}\n`);
        } else {
          // The text exactly as generated, then one newline to end the line.
          io.stdout.write(event.type === 'text' ? event.text : '\n');
        }
      }
      if (flag(values, 'verbose') && !flag(values, 'quiet')) {
        io.stderr.write(
          `prompt ${timing.promptTokens} tokens, prefill ${(timing.prefillMs / 1000).toFixed(2)} s (${rate(timing.promptTokens, timing.prefillMs)}); ` +
            `generated ${timing.generatedTokens} tokens, decode ${rate(Math.max(0, timing.generatedTokens - 1), timing.decodeMs)}\n`,
        );
      }
      return 0;
    } finally {
      model.dispose();
    }
  },
};
