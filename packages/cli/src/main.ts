/** The `graniteflow` command: dispatch to a subcommand, turn errors into messages and exit codes. */
import { chatCommand } from './commands/chat';
import type { Command } from './commands/common';
import { downloadCommand } from './commands/download';
import { finetuneCommand } from './commands/finetune';
import { generateCommand } from './commands/generate';
import { inspectCommand } from './commands/inspect';
import { logitsCommand } from './commands/logits';
import { quantizeCommand } from './commands/quantize';
import { serveCommand } from './commands/serve';
import { trainCommand } from './commands/train';
import { describeError, EXIT_OK, EXIT_USAGE, exitCodeOf, UsageError } from './errors';
import { processIO, type CliIO } from './io';

const COMMANDS: readonly Command[] = [
  generateCommand,
  chatCommand,
  serveCommand,
  trainCommand,
  finetuneCommand,
  inspectCommand,
  logitsCommand,
  downloadCommand,
  quantizeCommand,
];

function version(): string {
  return (require('../package.json') as { version: string }).version;
}

function globalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: graniteflow <command> [options]',
    '',
    'Run IBM Granite 4.0 hybrid (Mamba-2 + attention + MoE) language models on TensorFlow.js.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "graniteflow <command> --help" for its options. Without --model, commands use a tiny embedded',
    'model with random weights (it works offline; its text is meaningless).',
    '',
    'Exit codes: 0 success, 1 runtime error, 2 usage error.',
    '',
  ].join('\n');
}

/**
 * Runs the command line `argv` (without `node` and the script) and returns the exit code. Errors
 * are printed as one paragraph on stderr (with the stack only under `--debug`); nothing throws.
 *
 * @example
 * ```ts
 * process.exitCode = await main(['generate', '--max-tokens', '8', 'Hello']);
 * ```
 */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  const debug = argv.includes('--debug');
  const [name, ...rest] = argv;
  try {
    if (name === undefined) {
      io.stderr.write(globalHelp());
      return EXIT_USAGE;
    }
    if (name === '--help' || name === '-h' || name === 'help') {
      const topic = COMMANDS.find((c) => c.name === rest[0]);
      io.stdout.write(topic ? topic.help() : globalHelp());
      return EXIT_OK;
    }
    if (name === '--version' || name === '-V') {
      io.stdout.write(`${version()}\n`);
      return EXIT_OK;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      throw new UsageError(
        name.startsWith('-')
          ? `Options go after the command: graniteflow <command> ${name} … (commands: ${COMMANDS.map((c) => c.name).join(', ')}).`
          : `Unknown command "${name}"; the commands are ${COMMANDS.map((c) => c.name).join(', ')}.`,
      );
    }
    return await command.run(rest, io);
  } catch (err) {
    io.stderr.write(`graniteflow: error: ${describeError(err)}\n`);
    if (err instanceof UsageError) {
      io.stderr.write(`Run "graniteflow ${err.command ?? ''}${err.command ? ' ' : ''}--help" for usage.\n`);
    }
    if (debug && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
    return exitCodeOf(err);
  }
}
