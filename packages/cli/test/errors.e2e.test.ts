// Exit codes and messages: usage errors exit 2, runtime errors exit 1 with one paragraph and no stack.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const CHAT_TINY = path.join(GOLDEN, 'chat_tiny');
let tmp: string;

/** A copy of chat_tiny with `edit` applied to one file. */
function brokenCopy(name: string, edit: (folder: string) => void): string {
  const folder = path.join(tmp, name);
  fs.mkdirSync(folder);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    fs.copyFileSync(path.join(CHAT_TINY, f), path.join(folder, f));
  }
  edit(folder);
  return folder;
}

function editConfig(folder: string, change: (c: Record<string, unknown>) => void): void {
  const file = path.join(folder, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  change(config);
  fs.writeFileSync(file, JSON.stringify(config));
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('usage errors exit 2', () => {
  test.each([
    [[], /Usage: graniteflow <command>/],
    [['frobnicate'], /Unknown command "frobnicate"/],
    [['generate'], /needs a prompt/],
    [['generate', '--no-such-option', 'x'], /--no-such-option/],
    [['generate', '--temperature', 'hot', 'x'], /--temperature must be a number ≥ 0, got "hot"/],
    [['generate', '--max-tokens', '0', 'x'], /--max-tokens must be an integer ≥ 1/],
    [['generate', '--top-p', '0', 'x'], /--top-p must be greater than 0/],
    [['generate', '--model'], /argument missing|--model/],
    [['logits', '--ids', '1,x,3'], /comma-separated list/],
    [['logits'], /exactly one of --ids/],
    [['serve', '--port', '70000'], /--port must be an integer ≥ 0 and ≤ 65535/],
    [['download', 'not-a-repo'], /org\/name/],
    [['chat', 'extra'], /no positional arguments/],
    [['generate', '--backend', 'nope', 'x'], /--backend must be one of native, wasm, cpu/],
  ])('graniteflow %j', async (args, message) => {
    const r = await runCli(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe('');
  });

  test('--help prints usage on stdout and exits 0', async () => {
    const r = await runCli(['generate', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: graniteflow generate/);
    expect(r.stdout).toMatch(/--temperature T/);
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    for (const c of ['generate', 'chat', 'serve', 'inspect', 'logits', 'download']) expect(top.stdout).toContain(c);
  });
});

describe('runtime errors exit 1 with one clear paragraph', () => {
  test('a missing model folder', async () => {
    const r = await runCli(['generate', '--model', '/nonexistent/model-folder', 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/No model at \/nonexistent\/model-folder: the folder does not exist/);
    expect(r.stderr).toMatch(/Hugging Face repo id/);
  });

  test('a name that is neither a folder, a repo id nor a preset', async () => {
    const r = await runCli(['generate', '--model', 'nonsense', 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/No model named "nonsense"/);
  });

  test('a folder that is not a model', async () => {
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    const r = await runCli(['generate', '--model', empty, 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/no config\.json/);
  });

  test('corrupt safetensors (truncated)', async () => {
    const folder = brokenCopy('truncated', (f) => {
      const file = path.join(f, 'model.safetensors');
      fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    });
    const r = await runCli(['generate', '--model', folder, 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/model\.safetensors/);
    expect(r.stderr).toMatch(/corrupt or incomplete/);
  });

  test('corrupt safetensors (garbage header)', async () => {
    const folder = brokenCopy('garbage', (f) =>
      fs.writeFileSync(path.join(f, 'model.safetensors'), Buffer.from('this is not a safetensors file at all')),
    );
    const r = await runCli(['logits', '--model', folder, '--ids', '1,2']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/corrupt or incomplete/);
  });

  test('an unsupported model_type', async () => {
    const folder = brokenCopy('llama', (f) => editConfig(f, (c) => (c.model_type = 'llama')));
    const r = await runCli(['generate', '--model', folder, 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/model_type "llama" is not supported/);
    expect(r.stderr).toMatch(/granitemoehybrid/);
    const inspect = await runCli(['inspect', folder]);
    expectCleanError(inspect, 1);
    expect(inspect.stderr).toMatch(/"llama" is not supported/);
  });

  test('a model that will not fit in memory is refused before any weight is read', async () => {
    // 4 layers × 64 experts × 3 × 64 × 32768: 1.6 B parameters, within the config limits but past the wasm heap.
    const folder = brokenCopy('huge', (f) => editConfig(f, (c) => Object.assign(c, { num_local_experts: 64, intermediate_size: 32_768 })));
    const r = await runCli(['generate', '--model', folder, 'Hi']);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/needs about .*GiB/);
    expect(r.stderr).not.toMatch(/Loading/); // no progress: nothing was loaded
  });

  test('--debug adds the stack trace', async () => {
    const r = await runCli(['generate', '--debug', '--model', '/nonexistent/model-folder', 'Hi']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\n\s+at /);
  });

  test('a hub repo that cannot be reached', async () => {
    const r = await runCli(['generate', '--model', 'nobody-here/no-such-model', 'Hi'], {
      env: { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: path.join(tmp, 'hub-cache') },
    });
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/nobody-here\/no-such-model|127\.0\.0\.1:9/);
  });

  test('offline with a repo that is not cached', async () => {
    const r = await runCli(['generate', '--offline', '--model', 'nobody-here/no-such-model', 'Hi'], {
      env: { HF_HUB_CACHE: path.join(tmp, 'hub-cache') },
    });
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/[Oo]ffline/);
  });
});
