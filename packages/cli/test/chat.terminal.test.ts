// `graniteflow chat` on a real terminal: Ctrl-C and Ctrl-D arrive as keys through readline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GOLDEN, runCli } from './helpers/cli';
import { CTRL_C, CTRL_D, TerminalSession } from './helpers/terminal';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
// Greedy replies of the random-weight model run for a few thousand tokens before their eos: long
// enough to interrupt, short enough to let the uninterrupted one finish for comparison.
const LONG_REPLY = ['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '4000'];

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

function terminal(args: string[]): TerminalSession {
  const session = new TerminalSession(args);
  sessions.push(session);
  return session;
}

/** Removes what a terminal would not show as text, as the screen of {@link TerminalSession} does. */
const plain = (text: string) => text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\r/g, '');

onPosix('Ctrl-C during a reply stops it at once and keeps the conversation; Ctrl-C clears a typed line, then quits', async () => {
  const uninterrupted = await runCli([...LONG_REPLY, '--quiet'], { input: 'Hello\n' });
  expect(uninterrupted.code).toBe(0);
  const fullReply = plain(uninterrupted.stdout);
  expect(fullReply.length).toBeGreaterThan(5000);

  const chat = terminal(LONG_REPLY);
  await chat.waitFor(/Ctrl-D quits\.\n> $/);
  chat.type('Hello\r');
  await chat.waitFor(/^Hello\n[^]{300}/);
  chat.type(CTRL_C);
  await chat.waitFor(/\n\(cancelled\)\n> $/, 10_000);
  // What was shown is the start of the reply, cut off well before its end.
  const shown = /> Hello\n([^]*)\n\(cancelled\)\n> $/.exec(chat.screen)![1];
  expect(fullReply.startsWith(shown)).toBe(true);
  expect(shown.length).toBeLessThan(fullReply.length / 2);

  const file = path.join(tmp, 'cancelled.json');
  chat.type(`/save ${file}\r`);
  await chat.waitFor(/\(saved 2 messages to .*\)\n> $/);
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { messages: { role: string; content: string }[] };
  expect(saved.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
  expect(saved.messages[0].content).toBe('Hello');
  // The part of the reply generated before Ctrl-C is kept (the model's state holds it).
  expect(saved.messages[1].content.length).toBeGreaterThan(0);
  expect(saved.messages[1].content.length).toBeLessThan(fullReply.length / 2);

  chat.type('never sent');
  await chat.waitFor(/never sent$/);
  chat.type(CTRL_C);
  await chat.waitFor(/\^C\n> $/);
  chat.type(CTRL_C);
  expect(await chat.exit).toBe(0);
});

onPosix('the turn after a cancelled one resumes from the state it left', async () => {
  const chat = terminal([...LONG_REPLY, '--verbose']);
  await chat.waitFor(/\n> $/);
  chat.type('Hello\r');
  await chat.waitFor(/^Hello\n[^]{300}/);
  chat.type(CTRL_C);
  const first = await chat.waitFor(/\(cancelled\)\n\[prefill (\d+) tokens \(0 reused from the previous turn\).*; context (\d+) tokens\]\n> $/, 10_000);
  expect(Number(first[2])).toBeGreaterThan(Number(first[1]));

  chat.type('Go on\r');
  await chat.waitFor(/^Go on\n[^]{300}/);
  chat.type(CTRL_C);
  // Only the new message was fed: everything before it came from the state the cancelled turn left.
  const second = await chat.waitFor(/\(cancelled\)\n\[prefill (\d+) tokens \((\d+) reused from the previous turn\)/, 10_000);
  expect(Number(second[2])).toBe(Number(first[2]));
  expect(Number(second[1])).toBeLessThan(25);
  await chat.waitFor(/\n> $/);
  chat.type(CTRL_C);
  expect(await chat.exit).toBe(0);
});

onPosix('Ctrl-D at the prompt quits', async () => {
  const chat = terminal(LONG_REPLY);
  await chat.waitFor(/Ctrl-D quits\.\n> $/);
  chat.type(CTRL_D);
  expect(await chat.exit).toBe(0);
  expect(chat.screen).not.toMatch(/error/i);
});
