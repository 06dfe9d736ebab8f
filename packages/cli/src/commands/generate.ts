/** `graniteflow generate`: one prompt in, streamed text out. */
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
import { UsageError } from '../errors';
import { rate } from '../format';
import type { CliIO } from '../io';
import { newTiming, requireTokenizer, withTiming } from '../text_generation';
import { DTYPE_OPTIONS, loadFromArgs, samplingFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  ...SAMPLING_OPTIONS,
  chat: { type: 'boolean', short: 'c', description: "wrap the prompt as a user message in the model's chat template" },
  system: { type: 'string', short: 's', value: 'TEXT', description: 'system message (implies --chat)' },
  stop: { type: 'string', multiple: true, value: 'TEXT', description: 'stop before this text' },
  json: { type: 'boolean', description: 'print one JSON object per line per event instead of plain text' },
  verbose: { type: 'boolean', short: 'v', description: 'print token counts and tokens per second on stderr' },
  ...COMMON_OPTIONS,
};

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
      'Streams the model\'s continuation of the prompt to stdout (greedy unless --temperature > 0).',
      OPTIONS,
      [
        'graniteflow generate "Hello"',
        'graniteflow generate --model ibm-granite/granite-4.0-h-micro --chat "What is a state-space model?"',
        'graniteflow generate --model ibm-granite/granite-4.0-h-micro --dtype q4_0 "Hello"   (4-bit weights, 1.8 GB: fits the wasm heap)',
        'graniteflow generate -m ./my-model --temperature 0.7 --top-p 0.9 --seed 1 --max-tokens 64 "Once upon a time"',
        'graniteflow generate --json "Hello" | jq .',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('generate', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(generateCommand.help());
      return 0;
    }
    if (positionals.length === 0) throw new UsageError('generate needs a prompt, e.g. graniteflow generate "Hello".', 'generate');
    const sampling = samplingFromArgs('generate', values);
    const stopStrings = stringList(values, 'stop');
    if (stopStrings.some((s) => s === '')) throw new UsageError('--stop needs a non-empty text.', 'generate');
    const system = stringOption(values, 'system');
    const chat = flag(values, 'chat') || system !== undefined;
    const json = flag(values, 'json');
    const prompt = positionals.length === 1 && positionals[0] === '-' ? await readAll(io.stdin) : positionals.join(' ');

    const { model, source } = await loadFromArgs(values, io, { command: 'generate' });
    try {
      requireTokenizer(model);
      const promptIds = model.encodePrompt(prompt, { chat, system });
      if (promptIds.length === 0) throw new UsageError('The prompt is empty.', 'generate');
      if (json) io.stdout.write(JSON.stringify({ type: 'start', model: source.name, promptTokens: promptIds.length }) + '\n');
      const timing = newTiming();
      for await (const event of withTiming(model, timing).streamText(promptIds, { ...sampling, stopStrings })) {
        if (json) {
          const line = event.type === 'done' ? { ...event, promptTokens: promptIds.length, timing } : event;
          io.stdout.write(JSON.stringify(line) + '\n');
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
