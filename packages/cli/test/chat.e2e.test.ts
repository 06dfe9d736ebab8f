// `graniteflow chat` through a child process with piped standard input.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
const expectations = JSON.parse(fs.readFileSync(path.join(CHAT_TINY, 'text_expectations.json'), 'utf8')) as {
  cases: { kind: string; messages?: { content: string }[]; text: string }[];
};
const chatCases = expectations.cases.filter((c) => c.kind === 'chat');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-chat-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Turn {
  prefill: number;
  reused: number;
  decode: number;
  context: number;
}

function turns(stderr: string): Turn[] {
  return [
    ...stderr.matchAll(
      /\[prefill (\d+) tokens \((\d+) reused from the previous turn\) in [\d.]+ s, [\d.]+ tok\/s; decode (\d+) tokens, [\d.]+ tok\/s; context (\d+) tokens\]/g,
    ),
  ].map((m) => ({ prefill: Number(m[1]), reused: Number(m[2]), decode: Number(m[3]), context: Number(m[4]) }));
}

test('turns resume from the previous state; --verbose reports prefill and decode speed; /reset starts over', async () => {
  const first = chatCases[0];
  const input =
    [first.messages![0].content, 'Tell me more.', 'And then?', '/reset', first.messages![0].content, '/exit', 'never read'].join('\n') +
    '\n';
  const r = await runCli(['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '8', '--verbose'], { input });
  expect(r.code).toBe(0);
  // The first turn of a conversation is the golden one-turn chat (replies of random weights may
  // hold newlines, so the output is checked at its ends).
  expect(r.stdout.startsWith(`${first.text}\n`)).toBe(true);
  expect(r.stdout.endsWith(`\n${first.text}\n`)).toBe(true);
  const t = turns(r.stderr);
  expect(t).toHaveLength(4);
  expect(t[0].reused).toBe(0);
  // Later turns feed only the new tokens: the state after the previous turn is reused whole.
  expect(t[1].reused).toBe(t[0].context);
  expect(t[2].reused).toBe(t[1].context);
  expect(t[1].prefill).toBeLessThan(t[0].prefill);
  expect(t[1].prefill).toBeLessThan(25);
  expect(t[1].context).toBe(t[0].context + t[1].prefill + t[1].decode - 1);
  // After /reset the conversation is prefilled from scratch, and the same as the first turn.
  expect(t[3]).toEqual(t[0]);
  expect(r.stderr).toMatch(/conversation cleared/);
});

test('/save and /load keep a conversation across sessions; /system changes the prompt', async () => {
  const file = path.join(tmp, 'conversation.json');
  const first = await runCli(['chat', '--model', CHAT_TINY, '--quiet', '--temperature', '0', '--max-tokens', '6'], {
    input: `Hello\nHow are you?\n/save ${file}\n`,
  });
  expect(first.code).toBe(0);
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { format: string; messages: { role: string; content: string }[] };
  expect(saved.format).toBe('graniteflow-chat');
  expect(saved.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
  expect(saved.messages[0].content).toBe('Hello');

  const resumed = await runCli(['chat', '--model', CHAT_TINY, '--verbose', '--temperature', '0', '--max-tokens', '6'], {
    input: `/load ${file}\nThanks\n`,
  });
  expect(resumed.code).toBe(0);
  expect(resumed.stderr).toMatch(/loaded 4 messages/);
  const [turn] = turns(resumed.stderr);
  // The loaded conversation is fed once, whole, with the new message.
  expect(turn.reused).toBe(0);
  expect(turn.prefill).toBeGreaterThan(60);

  const system = await runCli(['chat', '--model', CHAT_TINY, '--quiet', '--temperature', '0', '--max-tokens', '8'], {
    input: '/system You are terse.\nWhat is free software?\n',
  });
  expect(system.code).toBe(0);
  expect(system.stdout).not.toBe(`${chatCases[0].text}\n`); // another system prompt, another continuation
});

test('unknown slash commands and bad /load files are reported, and the chat goes on', async () => {
  const r = await runCli(['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '3'], {
    input: `/frob\n/load ${path.join(tmp, 'missing.json')}\nHi\n`,
  });
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/Unknown command \/frob/);
  expect(r.stderr).toMatch(/Cannot read a conversation/);
  expect(r.stdout.length).toBeGreaterThan(1); // the reply to "Hi"
  expect(r.stdout.endsWith('\n')).toBe(true);
});

test('piped output is the replies alone: no labels, colour or status line, whatever the environment asks', async () => {
  const first = chatCases[0];
  const env = { FORCE_COLOR: '1', NO_COLOR: '', TERM: 'xterm-256color' };
  const r = await runCli(['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '8'], {
    input: `/frob\n${first.messages![0].content}\n`,
    env,
  });
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${first.text}\n`);
  expect(r.stderr).toMatch(/\nerror: Unknown command \/frob/);
  expect(r.stderr).not.toMatch(/\x1b\[[0-9;]*m/);
  expect(r.stderr).not.toMatch(/\[context /);
});

test('piped messages of several lines (\\ at the end of a line, """ blocks, one left open at the end); /stats', async () => {
  const file = path.join(tmp, 'multiline.json');
  const input = ['line one\\', 'line two', '"""', '  block', '/not a command', '"""', '/stats', `/save ${file}`, '"""', 'left open'].join(
    '\n',
  );
  const r = await runCli(['chat', '--model', CHAT_TINY, '--temperature', '0', '--max-tokens', '4', '--verbose'], { input });
  expect(r.code).toBe(0);
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { messages: { role: string; content: string }[] };
  expect(saved.messages.filter((m) => m.role === 'user').map((m) => m.content)).toEqual(['line one\nline two', '  block\n/not a command']);
  const t = turns(r.stderr);
  expect(t).toHaveLength(3); // the block left open at the end of the input is a message too
  const stats =
    /turns +(\d+)\nprompt +(\d+) tokens fed, (\d+) reused from the state\ngenerated +(\d+) tokens\ncontext +(\d+)\/(\d+) tokens/.exec(
      r.stderr,
    );
  expect(stats?.slice(1).map(Number)).toEqual([2, t[0].prefill + t[1].prefill, t[1].reused, t[0].decode + t[1].decode, t[1].context, 4096]);
  expect(r.stderr).not.toMatch(/\x1b\[[0-9;]*m/);
});
