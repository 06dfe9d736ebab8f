// `graniteflow finetune` as users run it, on the chat_tiny golden model (it has a chat template).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const MODEL = path.join(GOLDEN, 'chat_tiny');
const chat = (q: string, a: string) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: q },
      { role: 'assistant', content: a },
    ],
  });

describe('graniteflow finetune', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-finetune-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('learns the answers of a JSONL of conversations and writes a model folder that chat loads', async () => {
    const data = path.join(dir, 'chats.jsonl');
    const lines = Array.from({ length: 8 }, (_, i) => chat(`What is ${i} plus one?`, `It is ${i + 1}.`));
    fs.writeFileSync(data, `${lines.join('\n')}\n`);
    const out = path.join(dir, 'tuned');
    const r = await runCli(
      [
        'finetune',
        '--model',
        MODEL,
        '--data',
        data,
        '--out',
        out,
        '--steps',
        '8',
        '--batch',
        '2',
        '--lr',
        '3e-3',
        '--held-out',
        '0.25',
        '--eval-every',
        '4',
      ],
      {
        timeoutMs: 240_000,
      },
    );
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /: 8 steps on wasm in \d+ s over 6 conversations; training loss \d+\.\d+, held-out \d+\.\d+ nats\/token on 2 unseen conversations/,
    );
    expect(r.stderr).toMatch(/^held-out loss at step 4: /m);
    const log = JSON.parse(fs.readFileSync(path.join(out, 'training_log.json'), 'utf8'));
    expect(log.train[7].loss).toBeLessThan(log.train[0].loss);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'loss.svg', 'trainer_state.json']) {
      expect([f, fs.existsSync(path.join(out, f))]).toEqual([f, true]);
    }
    const g = await runCli(['generate', '--model', out, '--chat', '--quiet', '--max-tokens', '6', 'What is 3 plus one?']);
    expect(g.code).toBe(0);
  });

  it('--lora trains adapters on a packed base, saves them in PEFT layout, --resume continues them, --merge-into writes a merged model', async () => {
    const data = path.join(dir, 'chats-lora.jsonl');
    fs.writeFileSync(data, `${Array.from({ length: 6 }, (_, i) => chat(`Say ${i}.`, `${i}, said.`)).join('\n')}\n`);
    const out = path.join(dir, 'adapter');
    const merged = path.join(dir, 'merged');
    const args = [
      'finetune',
      '--model',
      MODEL,
      '--dtype',
      'q8_0',
      '--lora',
      '4',
      '--data',
      data,
      '--out',
      out,
      '--batch',
      '2',
      '--held-out',
      '0',
    ];
    const r = await runCli([...args, '--steps', '4', '--quiet'], { timeoutMs: 240_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const config = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      target_modules: ['in_proj', 'out_proj', 'q_proj', 'k_proj', 'v_proj', 'o_proj'],
      target_parameters: ['input_linear.weight', 'output_linear.weight'],
    });
    expect(fs.existsSync(path.join(out, 'adapter_model.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(false); // the base is not copied
    const more = await runCli([...args, '--steps', '6', '--resume', '--quiet', '--merge-into', merged], { timeoutMs: 240_000 });
    expect(more.stderr).toBe('');
    expect(more.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'trainer_state.json'), 'utf8')).step).toBe(6);
    const g = await runCli(['generate', '--model', merged, '--chat', '--quiet', '--max-tokens', '4', 'Say 2.']);
    expect(g.code).toBe(0);
    const full = await runCli(['finetune', '--model', MODEL, '--dtype', 'q8_0', '--data', data, '--out', path.join(dir, 'x')]);
    expectCleanError(full, 2);
    expect(full.stderr).toMatch(/--dtype \(a packed base\) needs --lora R/);
  });

  it('names the file and line of a broken conversation', async () => {
    const out = path.join(dir, 'bad');
    const data = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(data, `${chat('a', 'b')}\n{"messages": [{"role": "user"}]}\n`);
    const r = await runCli(['finetune', '--model', MODEL, '--data', data, '--out', out]);
    expectCleanError(r, 1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: message 1 needs a string "role" and a string "content"/);
    fs.writeFileSync(data, `${chat('a', 'b')}\nnot json\n`);
    const j = await runCli(['finetune', '--model', MODEL, '--data', data, '--out', out]);
    expectCleanError(j, 1);
    expect(j.stderr).toMatch(/bad\.jsonl:2 is not valid JSON/);
    fs.writeFileSync(data, `${JSON.stringify({ messages: [{ role: 'user', content: 'only a question' }] })}\n`);
    const q = await runCli(['finetune', '--model', MODEL, '--data', data, '--out', out]);
    expectCleanError(q, 1);
    expect(q.stderr).toMatch(/conversation 1: The conversation has no assistant message to learn from/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
