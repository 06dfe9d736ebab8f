// `graniteflow train` as users run it: the built command in a child process, on the tiny_moe config.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectCleanError, GOLDEN, runCli } from './helpers/cli';

const CONFIG = path.join(GOLDEN, 'tiny_moe', 'config.json');
const VERSES = [
  'In the beginning God created the heaven and the earth.',
  'And the earth was without form, and void; and darkness was upon the face of the deep.',
  'And God said, Let there be light: and there was light.',
  'And God saw the light, that it was good: and God divided the light from the darkness.',
];

describe('graniteflow train', () => {
  let dir: string;
  let corpus: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-train-'));
    corpus = path.join(dir, 'corpus.txt');
    fs.writeFileSync(corpus, `${Array.from({ length: 40 }, (_, i) => VERSES[i % VERSES.length]).join('\n')}\n\n${VERSES.join('\n')}\n`);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('trains, reports progress and the held-out loss, and writes a model folder that generate loads; --resume continues', async () => {
    const out = path.join(dir, 'model');
    const args = [
      'train',
      '--config',
      CONFIG,
      '--data',
      corpus,
      '--out',
      out,
      '--batch',
      '2',
      '--seq',
      '32',
      '--eval-every',
      '4',
      '--held-out',
      '0.05',
    ];
    const r = await runCli([...args, '--steps', '12'], { timeoutMs: 240_000 });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^step 1\/12 \[#*-*\] loss \d+\.\d{3} · lr \S+ · [\d,]+ tok\/s · ETA \S+$/m);
    expect(r.stderr).toMatch(/^held-out loss at step 4: \d+\.\d{3} nats\/token, \d+\.\d{3} nats\/byte$/m);
    expect(r.stdout).toMatch(/: 12 steps on wasm in \d+ s; training loss \d+\.\d+, held-out \d+\.\d+ nats\/token/);
    for (const f of [
      'model.safetensors',
      'config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'optimizer.safetensors',
      'trainer_state.json',
      'loss.svg',
      'training_log.json',
    ]) {
      expect([f, fs.existsSync(path.join(out, f))]).toEqual([f, true]);
    }
    const log = JSON.parse(fs.readFileSync(path.join(out, 'training_log.json'), 'utf8'));
    expect(log.train).toHaveLength(12);
    expect(log.train[11].loss).toBeLessThan(log.train[0].loss * 0.6);
    expect(log.heldOut.map((p: { step: number }) => p.step)).toEqual([4, 8, 12]);
    const svg = fs.readFileSync(path.join(out, 'loss.svg'), 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toMatch(/<polyline class="train-average" [^>]*points="[\d.]+,[\d.]+ /);
    expect(svg).toMatch(/<polyline class="held-out" [^>]*points="[\d.]+,[\d.]+ [\d.]+,[\d.]+ [\d.]+,[\d.]+"/);

    const g = await runCli(['generate', '--model', out, '--quiet', '--max-tokens', '8', 'In the']);
    expect(g.code).toBe(0);
    expect(g.stdout.length).toBeGreaterThan(1);

    const again = await runCli([...args, '--steps', '12']);
    expectCleanError(again, 2);
    expect(again.stderr).toMatch(/already holds a training run: pass --resume/);
    const resumed = await runCli([...args, '--steps', '16', '--resume', '--quiet'], { timeoutMs: 240_000 });
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toBe('');
    const after = JSON.parse(fs.readFileSync(path.join(out, 'training_log.json'), 'utf8'));
    expect(after.train.map((p: { step: number }) => p.step)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'trainer_state.json'), 'utf8')).step).toBe(16);
  });

  it('--vocab-size learns a byte-level BPE tokenizer from the corpus', async () => {
    const out = path.join(dir, 'bpe');
    const r = await runCli([
      'train',
      '--config',
      CONFIG,
      '--data',
      corpus,
      '--out',
      out,
      '--vocab-size',
      '300',
      '--steps',
      '3',
      '--batch',
      '2',
      '--seq',
      '16',
      '--quiet',
    ]);
    expect(r.code).toBe(0);
    const tokenizer = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8'));
    expect(tokenizer.model.merges.length).toBe(300 - 257);
    expect(Object.keys(tokenizer.model.vocab).length + tokenizer.added_tokens.length).toBe(300);
  });

  it('trains a model of the dense granite family from its config.json, and generate loads what it saved', async () => {
    const config = path.join(dir, 'granite-dense.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        model_type: 'granite',
        vocab_size: 300,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        tie_word_embeddings: true,
      }),
    );
    const out = path.join(dir, 'dense');
    const r = await runCli([
      'train',
      '--config',
      config,
      '--data',
      corpus,
      '--out',
      out,
      '--vocab-size',
      '300',
      '--steps',
      '6',
      '--batch',
      '2',
      '--seq',
      '16',
      '--quiet',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect([saved.model_type, saved.architectures]).toEqual(['granite', ['GraniteForCausalLM']]);
    const log = JSON.parse(fs.readFileSync(path.join(out, 'training_log.json'), 'utf8'));
    expect(log.train[5].loss).toBeLessThan(log.train[0].loss);
    const g = await runCli(['generate', '--model', out, '--quiet', '--max-tokens', '4', 'In the']);
    expect(g.code).toBe(0);
    expect(g.stdout.length).toBeGreaterThan(1);
  });

  it('bad input: missing files, a vocabulary too small for the tokenizer, a corpus too short', async () => {
    const out = path.join(dir, 'bad');
    const missing = await runCli(['train', '--config', CONFIG, '--out', out]);
    expectCleanError(missing, 2);
    expect(missing.stderr).toMatch(/needs --data FILE/);
    const noFile = await runCli(['train', '--config', CONFIG, '--data', path.join(dir, 'nope.txt'), '--out', out]);
    expectCleanError(noFile, 2);
    expect(noFile.stderr).toMatch(/nope\.txt cannot be read: no such file/);
    const small = path.join(dir, 'small.json');
    fs.writeFileSync(small, JSON.stringify({ ...JSON.parse(fs.readFileSync(CONFIG, 'utf8')), vocab_size: 200 }));
    const vocab = await runCli(['train', '--config', small, '--data', corpus, '--out', out]);
    expectCleanError(vocab, 1);
    expect(vocab.stderr).toMatch(/tokenizer has 257 tokens but the config's vocab_size is 200/);
    const tiny = path.join(dir, 'tiny.txt');
    fs.writeFileSync(tiny, 'Too short.');
    const short = await runCli(['train', '--config', CONFIG, '--data', tiny, '--out', out]);
    expectCleanError(short, 1);
    expect(short.stderr).toMatch(/fewer than one step needs/);
    expect(fs.existsSync(out)).toBe(false); // nothing written for a run that never started
  });
});
