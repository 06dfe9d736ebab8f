// Hostile or damaged model folders: each is refused fast, in one paragraph naming the file and what is wrong.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
let tmp: string;

/** A copy of chat_tiny with `edit` applied. */
function copyWith(name: string, edit: (folder: string) => void): string {
  const folder = path.join(tmp, name);
  fs.mkdirSync(folder);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    fs.copyFileSync(path.join(CHAT_TINY, f), path.join(folder, f));
  }
  edit(folder);
  return folder;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-files-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test.each([['generate', 'Hi'], ['inspect']])('%s with num_hidden_layers 1000000 fails in seconds, naming the field', async (...args) => {
  const folder = copyWith(`million-${args[0]}`, (f) => {
    const file = path.join(f, 'config.json');
    const { layer_types: _dropped, ...config } = JSON.parse(fs.readFileSync(file, 'utf8'));
    fs.writeFileSync(file, JSON.stringify({ ...config, num_hidden_layers: 1_000_000 }));
  });
  const started = Date.now();
  const r = await runCli([args[0], '--model', folder, ...args.slice(1)], { timeoutMs: 30_000 });
  expect(Date.now() - started).toBeLessThan(15_000);
  expectCleanError(r, 1);
  expect(r.stderr).toContain(
    `${path.join(folder, 'config.json')}: config field "num_hidden_layers" must be an integer from 1 to 4096, got 1000000`,
  );
});

test.each([
  ['model.safetensors', 'a FIFO', (f: string) => execFileSync('mkfifo', [f]), 'is a FIFO (named pipe), expected a regular file'],
  ['model.safetensors', 'a directory', (f: string) => fs.mkdirSync(f), 'is a directory, expected a regular file'],
  [
    'model.safetensors',
    'a symbolic link loop',
    (f: string) => fs.symlinkSync('model.safetensors', f),
    'is a symbolic link loop (ELOOP), expected a regular file',
  ],
  ['config.json', 'a FIFO', (f: string) => execFileSync('mkfifo', [f]), 'is a FIFO (named pipe), expected a regular file'],
  ['tokenizer.json', 'a FIFO', (f: string) => execFileSync('mkfifo', [f]), 'is a FIFO (named pipe), expected a regular file'],
])('generate with %s that is %s is refused at once, naming the path', async (name, kind, make, what) => {
  const folder = copyWith(`${name}-${kind}`.replace(/\W+/g, '-'), (f) => {
    fs.rmSync(path.join(f, name));
    make(path.join(f, name));
  });
  const r = await runCli(['generate', '--model', folder, 'Hi'], { timeoutMs: 30_000 });
  expect(r.signal).toBeNull(); // not killed by the timeout: nothing hung
  expectCleanError(r, 1);
  expect(r.stderr).toContain(path.join(folder, name));
  expect(r.stderr).toContain(what);
  expect(r.stderr).not.toMatch(/no model\.safetensors|EISDIR/);
});

test('an invalid generation_config.json gets its own message, not advice about tokenizer files', async () => {
  const folder = copyWith('bad-generation-config', (f) => fs.writeFileSync(path.join(f, 'generation_config.json'), '{"eos_token_id": 0,'));
  const r = await runCli(['generate', '--model', folder, 'Hi']);
  expectCleanError(r, 1);
  expect(r.stderr).toContain(`${path.join(folder, 'generation_config.json')} is not valid JSON`);
  expect(r.stderr).toMatch(/generation_config\.json holds the model's generation defaults/);
  expect(r.stderr).not.toMatch(/tokenizer files/);
});
