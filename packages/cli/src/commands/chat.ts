/** `graniteflow chat`: an interactive conversation on the terminal (or piped standard input). */
import * as readline from 'node:readline';
import { COMMON_OPTIONS, flag, formatHelp, MODEL_OPTIONS, parseCommandArgs, SAMPLING_OPTIONS, stringOption, type OptionTable } from '../args';
import { ChatSession } from '../chat_session';
import { describeError, UsageError } from '../errors';
import { rate } from '../format';
import type { CliIO } from '../io';
import { contextOf, DTYPE_OPTIONS, loadFromArgs, samplingFromArgs, withModelSampling, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  ...SAMPLING_OPTIONS,
  system: { type: 'string', short: 's', value: 'TEXT', description: 'system message' },
  verbose: { type: 'boolean', short: 'v', description: 'after each turn, print prefill and decode tokens per second on stderr' },
  ...COMMON_OPTIONS,
};

const REPL_HELP = `Commands:
  /reset          forget the conversation
  /system [TEXT]  set the system message (no TEXT: remove it); starts a fresh state
  /save FILE      write the conversation to FILE (JSON)
  /load FILE      continue a conversation saved with /save
  /help           this list
  /exit           quit (or Ctrl-D)
Ctrl-C stops a reply (what it said so far is kept); at the prompt it clears the line, or quits.
`;

export const chatCommand: Command = {
  name: 'chat',
  summary: 'an interactive conversation that keeps the model state between turns',
  help: () =>
    formatHelp(
      'graniteflow chat [options]',
      `Reads user messages line by line from standard input and streams the replies. Each turn resumes from the state after the previous one, so only the new tokens are fed to the model.\n\n${REPL_HELP}`,
      OPTIONS,
      ['graniteflow chat --model ibm-granite/granite-4.0-h-micro --verbose', 'graniteflow chat --model ibm-granite/granite-4.0-h-micro --dtype q4_0', 'printf "Hi\\nTell me more\\n" | graniteflow chat --quiet'],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('chat', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(chatCommand.help());
      return 0;
    }
    if (positionals.length) throw new UsageError(`chat takes no positional arguments (got "${positionals[0]}"); type messages after it starts.`, 'chat');
    const flags = samplingFromArgs('chat', values);
    const verbose = flag(values, 'verbose');
    const quiet = flag(values, 'quiet');
    const { model, source } = await loadFromArgs(values, io, { command: 'chat', contextLength: flags.maxContext, prefillChunk: flags.prefillChunk });
    const sampling = withModelSampling(flags, values, model);
    try {
      contextOf('chat', model, sampling.maxContext);
    } catch (err) {
      model.dispose();
      throw err;
    }
    const session = new ChatSession(model, sampling, source.name);
    const system = stringOption(values, 'system');
    if (system !== undefined) session.setSystem(system);
    const interactive = io.stdin.isTTY === true;
    const rl = readline.createInterface({ input: io.stdin, output: interactive ? (io.stdout as NodeJS.WritableStream) : undefined, terminal: interactive });
    // On a terminal, readline reads Ctrl-C as a key and emits 'SIGINT'. During a reply it cancels
    // the reply; at the prompt it discards what was typed, or on an empty line quits.
    let current: AbortController | null = null;
    rl.on('SIGINT', () => {
      if (current) {
        current.abort();
      } else if (rl.line !== '') {
        rl.write(null, { ctrl: true, name: 'e' });
        io.stdout.write('^C\n');
        rl.write(null, { ctrl: true, name: 'u' });
      } else {
        rl.close();
      }
    });
    const info = (text: string) => {
      if (!quiet) io.stderr.write(text);
    };
    if (interactive) info(`Chatting with ${source.name}. /help lists commands; Ctrl-C stops a reply, Ctrl-D quits.\n`);
    const reportTurn = () => {
      const s = session.lastTurn;
      if (!verbose || !s) return;
      io.stderr.write(
        `[prefill ${s.prefillTokens} tokens (${s.reusedTokens} reused from the previous turn) in ${(s.prefillMs / 1000).toFixed(2)} s, ${rate(s.prefillTokens, s.prefillMs)}; ` +
          `decode ${s.generatedTokens} tokens, ${rate(Math.max(0, s.generatedTokens - 1), s.decodeMs)}; context ${s.contextTokens} tokens]\n`,
      );
    };
    const prompt = () => {
      if (interactive) rl.prompt();
    };
    rl.setPrompt('> ');
    prompt();
    try {
      for await (const raw of rl) {
        const line = raw.trim();
        if (line === '') {
          prompt();
          continue;
        }
        if (line.startsWith('/')) {
          const [cmd, ...restWords] = line.split(/\s+/);
          const rest = line.slice(cmd.length).trim();
          try {
            if (cmd === '/exit' || cmd === '/quit') break;
            else if (cmd === '/reset') {
              session.reset();
              info('(conversation cleared)\n');
            } else if (cmd === '/system') {
              session.setSystem(rest === '' ? null : rest);
              info(rest === '' ? '(system message removed)\n' : '(system message set)\n');
            } else if (cmd === '/save' || cmd === '/load') {
              if (restWords.length === 0) throw new UsageError(`${cmd} needs a file name.`);
              if (cmd === '/save') session.save(rest);
              else session.load(rest);
              info(cmd === '/save' ? `(saved ${session.messages.length} messages to ${rest})\n` : `(loaded ${session.messages.length} messages from ${rest})\n`);
            } else if (cmd === '/help') {
              io.stderr.write(REPL_HELP);
            } else {
              throw new UsageError(`Unknown command ${cmd}; /help lists them.`);
            }
          } catch (err) {
            io.stderr.write(`error: ${describeError(err)}\n`);
          }
          prompt();
          continue;
        }
        current = new AbortController();
        try {
          for await (const event of session.turn(line, { signal: current.signal })) {
            if (event.type === 'text') io.stdout.write(event.text);
          }
          io.stdout.write('\n');
          reportTurn();
        } catch (err) {
          io.stdout.write('\n');
          if (current.signal.aborted) {
            // The reply so far stays in the conversation (see ChatSession.turn).
            io.stderr.write('(cancelled)\n');
            reportTurn();
          } else {
            io.stderr.write(`error: ${describeError(err)}\n`);
          }
        } finally {
          current = null;
        }
        prompt();
      }
    } finally {
      rl.close();
      session.dispose();
      model.dispose();
    }
    return 0;
  },
};
