/** `graniteflow chat`: an interactive conversation on the terminal (or piped standard input). */
import * as readline from 'node:readline';
import {
  COMMON_OPTIONS,
  flag,
  formatHelp,
  MODEL_OPTIONS,
  parseCommandArgs,
  SAMPLING_OPTIONS,
  stringOption,
  type OptionTable,
} from '../args';
import { ChatSession } from '../chat_session';
import { describeError, UsageError } from '../errors';
import { percent, rate } from '../format';
import type { CliIO } from '../io';
import { terminalStyle } from '../terminal_style';
import { contextOf, DTYPE_OPTIONS, loadFromArgs, samplingFromArgs, type Command } from './common';

const OPTIONS: OptionTable = {
  ...MODEL_OPTIONS,
  ...DTYPE_OPTIONS,
  ...SAMPLING_OPTIONS,
  system: { type: 'string', short: 's', value: 'TEXT', description: 'system message' },
  verbose: {
    type: 'boolean',
    short: 'v',
    description:
      'after each turn, print the tokens fed, reused and generated and the prefill and decode tokens per second on stderr (also when not on a terminal)',
  },
  ...COMMON_OPTIONS,
};

const REPL_HELP = `Commands:
  /reset          forget the conversation
  /system [TEXT]  set the system message (no TEXT: remove it); starts a fresh state
  /save FILE      write the conversation to FILE (JSON)
  /load FILE      continue a conversation saved with /save
  /stats          turns, tokens and speeds of this session so far, and the context used
  /help           this list
  /exit           quit (or Ctrl-D)
A message of several lines: end a line with \\ to go on on the next one, or start it with """ and
end it with a line that ends with """.
Ctrl-C stops a reply (what it said so far is kept); at the prompt it clears the line, or quits.
On a terminal, a status line after each reply shows the context used and the speeds (--quiet: none).
`;

/** What the assistant's replies are headed with on a terminal. */
const ASSISTANT_LABEL = 'granite> ';
const USER_LABEL = 'you> ';
const FENCE = '"""';

/** A complete input: a slash command (one line) or a message (maybe of several lines). */
interface Input {
  command: boolean;
  text: string;
}

/**
 * Joins input lines into messages: a line that ends with a backslash goes on on the next line (the
 * backslash is dropped); a line starting with `"""` opens a block that the next line ending with
 * `"""` closes, taken as it is (no commands, no backslashes). Slash commands are single lines.
 */
class MessageReader {
  private lines: string[] | null = null;
  private fenced = false;

  /** Whether a message has begun and waits for more lines. */
  get pending(): boolean {
    return this.lines !== null;
  }

  /** Drops a message begun and not finished. */
  clear(): void {
    this.lines = null;
    this.fenced = false;
  }

  /** Reads one line; returns the input it completes, or null while more lines are to come. */
  push(raw: string): Input | null {
    if (this.lines === null) {
      const line = raw.trim();
      if (line.startsWith(FENCE)) {
        const rest = line.slice(FENCE.length);
        if (rest.length >= FENCE.length && rest.endsWith(FENCE)) return { command: false, text: rest.slice(0, -FENCE.length).trim() };
        this.lines = [rest];
        this.fenced = true;
        return null;
      }
      if (line.startsWith('/')) return { command: true, text: line };
      if (!raw.endsWith('\\')) return { command: false, text: line };
      this.lines = [raw.slice(0, -1)];
      return null;
    }
    if (this.fenced) {
      const end = raw.trimEnd();
      if (!end.endsWith(FENCE)) {
        this.lines.push(raw);
        return null;
      }
      this.lines.push(end.slice(0, -FENCE.length));
      return this.finish();
    }
    if (raw.endsWith('\\')) {
      this.lines.push(raw.slice(0, -1));
      return null;
    }
    this.lines.push(raw);
    return this.finish();
  }

  /** The message begun, as it stands (at the end of the input), or null if none was. */
  finish(): Input | null {
    if (this.lines === null) return null;
    // Blank lines around the message go; a block keeps the indentation of its first line.
    const text = this.lines
      .join('\n')
      .replace(/^\s*\n/, '')
      .trimEnd();
    const fenced = this.fenced;
    this.clear();
    return { command: false, text: fenced ? text : text.trimStart() };
  }
}

type TurnStats = NonNullable<ChatSession['lastTurn']>;

/** What the turns of one `chat` run added up to, for `/stats`. */
class SessionTotals {
  turns = 0;
  cancelled = 0;
  fed = 0;
  reused = 0;
  generated = 0;
  prefillMs = 0;
  /** Tokens generated after the first one of each turn: those `decodeMs` timed. */
  decodeSteps = 0;
  decodeMs = 0;

  add(s: TurnStats, cancelled: boolean): void {
    this.turns++;
    if (cancelled) this.cancelled++;
    this.fed += s.prefillTokens;
    this.reused += s.reusedTokens;
    this.generated += s.generatedTokens;
    this.prefillMs += s.prefillMs;
    this.decodeSteps += Math.max(0, s.generatedTokens - 1);
    this.decodeMs += s.decodeMs;
  }
}

/** `context 123/4096 (3%)`: tokens in the model's state out of the most it may hold. */
function contextUse(used: number, max: number): string {
  return `${used}/${max} tokens (${percent(used, max)})`;
}

export const chatCommand: Command = {
  name: 'chat',
  summary: 'an interactive conversation that keeps the model state between turns',
  help: () =>
    formatHelp(
      'graniteflow chat [options]',
      `Reads user messages line by line from standard input and streams the replies. Each turn resumes from the state after the previous one, so only the new tokens are fed to the model. On a terminal, messages and replies are labelled and coloured (not when NO_COLOR is set, FORCE_COLOR=0 or TERM=dumb); piped output holds the replies only.\n\n${REPL_HELP}`,
      OPTIONS,
      [
        'graniteflow chat --model ibm-granite/granite-4.0-h-micro --verbose',
        'graniteflow chat --model ibm-granite/granite-4.0-h-micro --dtype q4_0',
        'printf "Hi\\nTell me more\\n" | graniteflow chat --quiet',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('chat', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(chatCommand.help());
      return 0;
    }
    if (positionals.length)
      throw new UsageError(`chat takes no positional arguments (got "${positionals[0]}"); type messages after it starts.`, 'chat');
    const flags = samplingFromArgs('chat', values);
    const verbose = flag(values, 'verbose');
    const quiet = flag(values, 'quiet');
    const { model, source } = await loadFromArgs(values, io, {
      command: 'chat',
      contextLength: flags.maxContext,
      prefillChunk: flags.prefillChunk,
    });
    let maxContext: number;
    try {
      maxContext = contextOf('chat', model, flags.maxContext);
    } catch (err) {
      model.dispose();
      throw err;
    }
    // The session fills in the model's generation_config.json sampling where no flag set it.
    const session = new ChatSession(model, flags, source.name);
    const system = stringOption(values, 'system');
    if (system !== undefined) session.setSystem(system);
    const interactive = io.stdin.isTTY === true;
    // Labels only where a person reads the replies; piped output stays the bare replies.
    const labelled = interactive && io.stdout.isTTY === true;
    // The status line goes to stderr, in interactive chats only (--verbose prints its own line).
    const statusLine = interactive && io.stderr.isTTY === true && !quiet && !verbose;
    const outStyle = terminalStyle(io.stdout);
    const errStyle = terminalStyle(io.stderr);
    const mainPrompt = labelled ? outStyle.user(USER_LABEL) : '> ';
    const morePrompt = labelled ? outStyle.dim('.'.repeat(USER_LABEL.length - 2).padEnd(USER_LABEL.length)) : '. ';
    const reader = new MessageReader();
    const totals = new SessionTotals();
    /** Tokens in the model's state now (0 once it is dropped: /reset, /system, /load, a failed turn). */
    let contextTokens = 0;

    const rl = readline.createInterface({
      input: io.stdin,
      output: interactive ? (io.stdout as NodeJS.WritableStream) : undefined,
      terminal: interactive,
    });
    // On a terminal, readline reads Ctrl-C as a key and emits 'SIGINT'. During a reply it cancels
    // the reply; at the prompt it discards what was typed (a message of several lines too), or on
    // an empty line quits.
    let current: AbortController | null = null;
    rl.on('SIGINT', () => {
      if (current) {
        current.abort();
      } else if (rl.line !== '' || reader.pending) {
        reader.clear();
        rl.setPrompt(mainPrompt);
        rl.write(null, { ctrl: true, name: 'e' });
        io.stdout.write('^C\n');
        rl.write(null, { ctrl: true, name: 'u' }); // clears the line and shows the prompt again
      } else {
        rl.close();
      }
    });
    const info = (text: string) => {
      if (!quiet) io.stderr.write(`${errStyle.dim(text)}\n`);
    };
    const error = (text: string) => io.stderr.write(`${errStyle.red(errStyle.bold('error:'))} ${text}\n`);
    if (interactive) info(`Chatting with ${source.name}. /help lists commands; Ctrl-C stops a reply, Ctrl-D quits.`);
    const reportTurn = (s: TurnStats) => {
      if (verbose) {
        io.stderr.write(
          `${errStyle.dim(
            `[prefill ${s.prefillTokens} tokens (${s.reusedTokens} reused from the previous turn) in ${(s.prefillMs / 1000).toFixed(2)} s, ${rate(s.prefillTokens, s.prefillMs)}; ` +
              `decode ${s.generatedTokens} tokens, ${rate(Math.max(0, s.generatedTokens - 1), s.decodeMs)}; context ${s.contextTokens} tokens]`,
          )}\n`,
        );
      } else if (statusLine) {
        io.stderr.write(
          `${errStyle.dim(
            `[context ${contextUse(s.contextTokens, maxContext)} | prefill ${s.prefillTokens} tok, ${rate(s.prefillTokens, s.prefillMs)} | ` +
              `decode ${s.generatedTokens} tok, ${rate(Math.max(0, s.generatedTokens - 1), s.decodeMs)}]`,
          )}\n`,
        );
      }
    };
    const stats = () => {
      const rows: [string, string][] = [
        ['turns', `${totals.turns}${totals.cancelled ? ` (${totals.cancelled} cancelled)` : ''}`],
        ['prompt', `${totals.fed} tokens fed, ${totals.reused} reused from the state`],
        ['generated', `${totals.generated} tokens`],
        ['context', contextUse(contextTokens, maxContext)],
        ['prefill', `${rate(totals.fed, totals.prefillMs)} on average`],
        ['decode', `${rate(totals.decodeSteps, totals.decodeMs)} on average`],
      ];
      io.stderr.write(rows.map(([name, value]) => `${errStyle.bold(name.padEnd(10))} ${value}\n`).join(''));
    };
    const prompt = () => {
      if (interactive) rl.prompt();
    };

    /** Runs a slash command; true for /exit. */
    const command = (line: string): boolean => {
      const [cmd, ...restWords] = line.split(/\s+/);
      const rest = line.slice(cmd.length).trim();
      try {
        if (cmd === '/exit' || cmd === '/quit') return true;
        if (cmd === '/reset') {
          session.reset();
          contextTokens = 0;
          info('(conversation cleared)');
        } else if (cmd === '/system') {
          session.setSystem(rest === '' ? null : rest);
          contextTokens = 0;
          info(rest === '' ? '(system message removed)' : '(system message set)');
        } else if (cmd === '/save' || cmd === '/load') {
          if (restWords.length === 0) throw new UsageError(`${cmd} needs a file name.`);
          if (cmd === '/save') {
            session.save(rest);
          } else {
            session.load(rest);
            contextTokens = 0;
          }
          info(
            cmd === '/save'
              ? `(saved ${session.messages.length} messages to ${rest})`
              : `(loaded ${session.messages.length} messages from ${rest})`,
          );
        } else if (cmd === '/stats') {
          stats();
        } else if (cmd === '/help') {
          io.stderr.write(REPL_HELP);
        } else {
          throw new UsageError(`Unknown command ${cmd}; /help lists them.`);
        }
      } catch (e) {
        error(describeError(e));
      }
      return false;
    };

    const turn = async (text: string) => {
      current = new AbortController();
      let cancelled = false;
      try {
        if (labelled) io.stdout.write(outStyle.assistant(ASSISTANT_LABEL));
        for await (const event of session.turn(text, { signal: current.signal })) {
          if (event.type === 'text') io.stdout.write(event.text);
        }
        io.stdout.write('\n');
      } catch (e) {
        io.stdout.write('\n');
        if (current.signal.aborted) {
          // The reply so far stays in the conversation (see ChatSession.turn).
          cancelled = true;
          io.stderr.write(`${errStyle.yellow('(cancelled)')}\n`);
        } else {
          error(describeError(e));
        }
      } finally {
        current = null;
      }
      // No stats when the turn failed: ChatSession then drops the state.
      const s = session.lastTurn;
      contextTokens = s?.contextTokens ?? 0;
      if (s) {
        totals.add(s, cancelled);
        reportTurn(s);
      }
    };

    /** Acts on one input; true for /exit. */
    const handle = async (input: Input): Promise<boolean> => {
      if (input.command) return command(input.text);
      if (input.text !== '') await turn(input.text);
      return false;
    };

    rl.setPrompt(mainPrompt);
    prompt();
    try {
      let exited = false;
      for await (const raw of rl) {
        const input = reader.push(raw);
        rl.setPrompt(reader.pending ? morePrompt : mainPrompt);
        if (input && (await handle(input))) {
          exited = true;
          break;
        }
        prompt();
      }
      // Piped input may end in a message of several lines left open; on a terminal, Ctrl-D drops it.
      const last = reader.finish();
      if (!exited && last && !interactive) await handle(last);
    } finally {
      rl.close();
      session.dispose();
      model.dispose();
    }
    return 0;
  },
};
