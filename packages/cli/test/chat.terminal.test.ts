// `graniteflow chat` on a real terminal: role labels and colour, the status line, messages of
// several lines, and Ctrl-C and Ctrl-D arriving as keys through readline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GOLDEN, runCli } from './helpers/cli';
import { CTRL_C, CTRL_D, TerminalSession } from './helpers/terminal';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
// Greedy replies of the random-weight model run for a few thousand tokens before their eos: long
// enough to interrupt, short enough to let the uninterrupted one finish for comparison.
const LONG_REPLY = ['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '4000'];
const SHORT_REPLY = ['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '8'];
/** Colour as a terminal in the test's own environment would have it, whatever that environment says. */
const COLOUR = { NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: 'xterm-256color' };

// Pseudo-terminals (Python's pty module) exist on Linux and macOS only.
const onPosix = process.platform === 'win32' ? test.skip : test;

let tmp: string;
let sessions: TerminalSession[] = [];
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-chat-terminal-'));
});
afterEach(() => {
  for (const s of sessions) s.kill();
  sessions = [];
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function terminal(args: string[], env: Record<string, string | undefined> = {}): TerminalSession {
  const session = new TerminalSession(args, { env });
  sessions.push(session);
  return session;
}

/** Removes what a terminal would not show as text, as the screen of {@link TerminalSession} does. */
const plain = (text: string) => text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\r/g, '');
/** SGR escape sequences: colour and weight (readline's own cursor moves are other sequences). */
const SGR = /\x1b\[[0-9;]*m/;
/** The status line after a reply: context used and the most it may hold, prefill and decode. */
const STATUS = /\[context (\d+)\/(\d+) tokens \((?:\d+|<1)%\) \| prefill (\d+) tok, [\d.]+ tok\/s \| decode (\d+) tok, [\d.]+ tok\/s\]\n/;
const PROMPT = /\nyou> $/;

interface Saved {
  messages: { role: string; content: string }[];
}
function readSaved(file: string): Saved {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Saved;
}

onPosix('Ctrl-C during a reply stops it at once and keeps the conversation; Ctrl-C clears a typed line, then quits', async () => {
  const uninterrupted = await runCli([...LONG_REPLY, '--quiet'], { input: 'Hello\n' });
  expect(uninterrupted.code).toBe(0);
  const fullReply = plain(uninterrupted.stdout);
  expect(fullReply.length).toBeGreaterThan(5000);

  const chat = terminal(LONG_REPLY);
  await chat.waitFor(/Ctrl-D quits\.\nyou> $/);
  chat.type('Hello\r');
  await chat.waitFor(/^Hello\n[\s\S]{300}/);
  chat.type(CTRL_C);
  await chat.waitFor(/\n\(cancelled\)\n\[context [^\n]*\]\nyou> $/, 10_000);
  // What was shown is the start of the reply, cut off well before its end.
  const shown = /you> Hello\ngranite> ([\s\S]*)\n\(cancelled\)\n/.exec(chat.screen)![1];
  expect(fullReply.startsWith(shown)).toBe(true);
  expect(shown.length).toBeLessThan(fullReply.length / 2);

  const file = path.join(tmp, 'cancelled.json');
  chat.type(`/save ${file}\r`);
  await chat.waitFor(/\(saved 2 messages to .*\)\nyou> $/);
  const saved = readSaved(file);
  expect(saved.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
  expect(saved.messages[0].content).toBe('Hello');
  // The part of the reply generated before Ctrl-C is kept (the model's state holds it).
  expect(saved.messages[1].content.length).toBeGreaterThan(0);
  expect(saved.messages[1].content.length).toBeLessThan(fullReply.length / 2);

  chat.type('never sent');
  await chat.waitFor(/never sent$/);
  chat.type(CTRL_C);
  await chat.waitFor(/\^C\nyou> $/);
  chat.type(CTRL_C);
  expect(await chat.exit).toBe(0);
});

onPosix('the turn after a cancelled one resumes from the state it left', async () => {
  const chat = terminal([...LONG_REPLY, '--verbose']);
  await chat.waitFor(PROMPT);
  chat.type('Hello\r');
  await chat.waitFor(/^Hello\n[\s\S]{300}/);
  chat.type(CTRL_C);
  const first = await chat.waitFor(
    /\(cancelled\)\n\[prefill (\d+) tokens \(0 reused from the previous turn\).*; context (\d+) tokens\]\nyou> $/,
    10_000,
  );
  expect(Number(first[2])).toBeGreaterThan(Number(first[1]));

  chat.type('Go on\r');
  await chat.waitFor(/^Go on\n[\s\S]{300}/);
  chat.type(CTRL_C);
  // Only the new message was fed: everything before it came from the state the cancelled turn left.
  const second = await chat.waitFor(/\(cancelled\)\n\[prefill (\d+) tokens \((\d+) reused from the previous turn\)/, 10_000);
  expect(Number(second[2])).toBe(Number(first[2]));
  expect(Number(second[1])).toBeLessThan(25);
  await chat.waitFor(PROMPT);
  chat.type(CTRL_C);
  expect(await chat.exit).toBe(0);
  // --verbose prints its own line instead of the status line.
  expect(chat.screen).not.toMatch(/\[context /);
});

onPosix('Ctrl-D at the prompt quits', async () => {
  const chat = terminal(LONG_REPLY);
  await chat.waitFor(/Ctrl-D quits\.\nyou> $/);
  chat.type(CTRL_D);
  expect(await chat.exit).toBe(0);
  expect(chat.screen).not.toMatch(/error/i);
});

onPosix(
  'on a terminal, messages and replies are labelled and coloured; a status line shows the context and speeds; /stats adds the turns up',
  async () => {
    const chat = terminal([...SHORT_REPLY, '--ctx', '2048'], COLOUR);
    await chat.waitFor(/Ctrl-D quits\.\nyou> $/);
    chat.type('Hello\r');
    const first = await chat.waitFor(new RegExp(`^Hello\\ngranite> [\\s\\S]*\\n${STATUS.source}you> $`), 30_000);
    // The context is the one --ctx asked for, not the model's 4096 positions.
    expect(Number(first[2])).toBe(2048);
    const [context1, prefill1, decode1] = [Number(first[1]), Number(first[3]), Number(first[4])];
    expect(decode1).toBe(8);
    expect(context1).toBe(prefill1 + decode1 - 1); // the last token is fed next turn
    // The labels, bold green and bold cyan; the status line dim.
    expect(chat.output).toContain('\x1b[1;32myou> \x1b[39;22m');
    expect(chat.output).toContain('\x1b[1;36mgranite> \x1b[39;22m');
    expect(chat.output).toMatch(/\x1b\[2m\[context \d+\/2048 /);

    chat.type('Tell me more\r');
    const second = await chat.waitFor(new RegExp(`^Tell me more\\ngranite> [\\s\\S]*\\n${STATUS.source}you> $`), 30_000);
    const [context2, prefill2, decode2] = [Number(second[1]), Number(second[3]), Number(second[4])];
    expect(context2).toBe(context1 + prefill2 + decode2 - 1);

    chat.type('/stats\r');
    const stats = await chat.waitFor(
      /^\/stats\nturns +(\d+)\nprompt +(\d+) tokens fed, (\d+) reused from the state\ngenerated +(\d+) tokens\ncontext +(\d+)\/(\d+) tokens \((?:\d+|<1)%\)\nprefill +[\d.]+ tok\/s on average\ndecode +[\d.]+ tok\/s on average\nyou> $/,
    );
    expect(stats.slice(1).map(Number)).toEqual([2, prefill1 + prefill2, context1, decode1 + decode2, context2, 2048]);

    chat.type('/reset\r');
    await chat.waitFor(/conversation cleared\)\nyou> $/);
    chat.type('/stats\r');
    // The totals stay; the state is gone.
    await chat.waitFor(/^\/stats\nturns +2\n[\s\S]*\ncontext +0\/2048 tokens \(0%\)\n[\s\S]*you> $/);
    chat.type(CTRL_D);
    expect(await chat.exit).toBe(0);
  },
);

onPosix.each([
  ['NO_COLOR=1', { NO_COLOR: '1' }],
  ['FORCE_COLOR=0', { FORCE_COLOR: '0' }],
  ['TERM=dumb', { TERM: 'dumb' }],
])('%s: labels and the status line without colour', async (_name, env) => {
  const chat = terminal(SHORT_REPLY, { ...COLOUR, ...env });
  await chat.waitFor(/Ctrl-D quits\.\nyou> $/);
  chat.type('Hello\r');
  await chat.waitFor(new RegExp(`^Hello\\ngranite> [\\s\\S]*\\n${STATUS.source}you> $`), 30_000);
  chat.type('/stats\r');
  await chat.waitFor(/decode +[\d.]+ tok\/s on average\nyou> $/);
  chat.type('/frob\r');
  await chat.waitFor(/error: Unknown command \/frob; \/help lists them\.\nyou> $/);
  chat.type(CTRL_D);
  expect(await chat.exit).toBe(0);
  expect(chat.output).not.toMatch(SGR);
});

onPosix('--quiet: no status line', async () => {
  const chat = terminal([...SHORT_REPLY, '--quiet'], COLOUR);
  await chat.waitFor(/you> $/); // no notice before it
  chat.type('Hello\r');
  await chat.waitFor(/^Hello\ngranite> [\s\S]*\nyou> $/, 30_000);
  chat.type(CTRL_D);
  expect(await chat.exit).toBe(0);
  expect(chat.screen).not.toMatch(/\[context /);
});

onPosix('a message of several lines: a line ending with \\ goes on, """ opens and closes a block; Ctrl-C drops one begun', async () => {
  const file = path.join(tmp, 'multiline.json');
  const chat = terminal(SHORT_REPLY, COLOUR);
  await chat.waitFor(PROMPT);
  chat.type('first line\\\r');
  // A prompt of its own while the message goes on, and no reply yet.
  await chat.waitFor(/^first line\\\n\.\.\. {2}$/);
  chat.type('second line\r');
  await chat.waitFor(new RegExp(`^second line\\ngranite> [\\s\\S]*\\n${STATUS.source}you> $`), 30_000);

  chat.type('"""\r');
  await chat.waitFor(/^"""\n\.\.\. {2}$/);
  chat.type('  indented\\\r');
  await chat.waitFor(/\n\.\.\. {2}$/);
  chat.type('/not a command\r');
  await chat.waitFor(/\n\.\.\. {2}$/);
  chat.type('\r');
  await chat.waitFor(/\n\.\.\. {2}$/);
  chat.type('end"""\r');
  await chat.waitFor(new RegExp(`^end"""\\ngranite> [\\s\\S]*\\n${STATUS.source}you> $`), 30_000);

  chat.type('dropped\\\r');
  await chat.waitFor(/\n\.\.\. {2}$/);
  chat.type('also dropped');
  await chat.waitFor(/also dropped$/);
  chat.type(CTRL_C);
  await chat.waitFor(/\^C\nyou> $/);
  chat.type('not sent either\\\r');
  await chat.waitFor(/\n\.\.\. {2}$/);
  chat.type(CTRL_C); // on the empty line of a message begun: drops it, does not quit
  await chat.waitFor(/\^C\nyou> $/);

  chat.type(`/save ${file}\r`);
  await chat.waitFor(/\(saved 4 messages to .*\)\nyou> $/);
  const saved = readSaved(file);
  expect(saved.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
  expect(saved.messages[0].content).toBe('first line\nsecond line');
  expect(saved.messages[2].content).toBe('  indented\\\n/not a command\n\nend');
  chat.type(CTRL_D);
  expect(await chat.exit).toBe(0);
});
