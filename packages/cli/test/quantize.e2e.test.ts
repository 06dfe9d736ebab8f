// `graniteflow quantize` on the golden checkpoints: the packed folder's tensors equal the JS
// quantizer's bytes of the source tensors, bit for bit; the side files are copies; the folder
// appears complete or not at all (errors, Ctrl-C); errors are one clean paragraph.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint, quantizeRows, writeSafetensors, type PackedFormat } from '@graniteflow/core';
import { BIN, expectCleanError, GOLDEN, REPO_DIR, runCli } from './helpers/cli';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graniteflow-cli-quantize-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Names and shapes the policy must pack (the matrices tokens are multiplied by), when their rows are whole blocks. */
const MATRIX = /\.(in_proj|out_proj|q_proj|k_proj|v_proj|o_proj|input_linear|output_linear|embed_tokens)\.weight$/;
/** ... and must keep as they are. */
const KEPT = /(norm\.weight|\.A_log|\.D|\.dt_bias|conv1d\.(weight|bias)|\.router\.layer\.weight|\.bias)$/;

/** Entries of a folder that are not the expected output: temporary or half-replaced folders. */
const strays = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes('graniteflow-'));

describe.each([
  ['micro_dense', 'q4_0'],
  ['tiny_moe', 'q8_0'],
  ['chat_tiny', 'q4_0'],
  ['tiny_moe', 'q4_0'],
] as const)('%s to %s', (folder, dtype: PackedFormat) => {
  const src = path.join(GOLDEN, folder);
  let out: string;
  let stdout: string;

  beforeAll(async () => {
    out = path.join(tmp, `${folder}-${dtype}`);
    const r = await runCli(['quantize', '--model', src, '--dtype', dtype, '--out', out]);
    expect(r.stderr).toMatch(new RegExp(`Wrote ${out}: \\d+ tensors \\(\\d+ packed as ${dtype}, \\d+ kept as they were\\)`));
    expect(r.code).toBe(0);
    stdout = r.stdout;
  });

  it('prints the folder, and leaves nothing else next to it', () => {
    expect(stdout).toBe(`${out}\n`);
    expect(strays(tmp)).toEqual([]);
  });

  it('packs the matrices bit-exactly as the JS quantizer does, and keeps the rest byte for byte', () => {
    const source = Checkpoint.open(src);
    const packed = Checkpoint.open(out);
    expect(packed.names().sort()).toEqual(source.names().sort());
    let packedCount = 0;
    for (const name of source.names()) {
      const info = source.info(name);
      const got = packed.info(name);
      const cols = info.shape[info.shape.length - 1];
      if (got.packed === undefined) {
        expect([name, MATRIX.test(name) && cols % 32 === 0]).toEqual([name, false]);
        expect([name, got.dtype, got.shape]).toEqual([name, info.dtype, info.shape]);
        expect([name, sha(packed.readBytes(name))]).toEqual([name, sha(source.readBytes(name))]);
        continue;
      }
      packedCount++;
      expect([name, KEPT.test(name)]).toEqual([name, false]);
      expect([name, got.packed]).toEqual([name, { format: dtype, shape: info.shape }]);
      const values = source.read(name).data as Float32Array;
      const expected = quantizeRows(dtype, values, values.length / cols, cols);
      expect([name, sha(packed.readBytes(name))]).toEqual([name, sha(expected)]);
    }
    expect(packedCount).toBeGreaterThan(0);
    source.close();
    packed.close();
  });

  it('describes the packed tensors in __metadata__', () => {
    const buf = fs.readFileSync(path.join(out, 'model.safetensors'));
    const headerLength = Number(buf.readBigUInt64LE(0));
    expect((8 + headerLength) % 32).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString()) as Record<string, { dtype: string; shape: number[] }> & {
      __metadata__: Record<string, string>;
    };
    const metadata = header.__metadata__;
    expect(metadata['graniteflow.packed']).toBe('1');
    const source = Checkpoint.open(src);
    for (const [key, value] of Object.entries(metadata)) {
      const m = /^graniteflow\.(dtype|shape)\.(.+)$/.exec(key);
      if (m === null) continue;
      const name = m[2];
      expect([key, value]).toEqual([key, m[1] === 'dtype' ? dtype : JSON.stringify(source.info(name).shape)]);
      const rows = source
        .info(name)
        .shape.slice(0, -1)
        .reduce((a, b) => a * b, 1);
      const cols = source.info(name).shape.at(-1)!;
      expect(header[name]).toMatchObject({ dtype: 'U8', shape: [rows, (cols / 32) * (dtype === 'q8_0' ? 34 : 18)] });
    }
    source.close();
  });

  it('copies config.json, the tokenizer files and generation_config.json as they are', () => {
    const sideFiles = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'].filter((f) =>
      fs.existsSync(path.join(src, f)),
    );
    expect(sideFiles).toContain('config.json');
    for (const f of sideFiles) expect([f, sha(fs.readFileSync(path.join(out, f)))]).toEqual([f, sha(fs.readFileSync(path.join(src, f)))]);
    expect(fs.readdirSync(out).sort()).toEqual([...sideFiles, 'model.safetensors'].sort());
  });
});

it('shards past --max-shard-size, with an index, and the shards read back', async () => {
  const out = path.join(tmp, 'sharded');
  const r = await runCli([
    'quantize',
    '-m',
    path.join(GOLDEN, 'tiny_moe'),
    '-d',
    'q4_0',
    '-o',
    out,
    '--max-shard-size',
    '100KB',
    '--quiet',
  ]);
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  const shards = fs.readdirSync(out).filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
  expect(shards.length).toBeGreaterThan(1);
  for (const s of shards) expect(fs.statSync(path.join(out, s)).size).toBeLessThan(100_000 + 64 * 1024);
  const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
  const source = Checkpoint.open(path.join(GOLDEN, 'tiny_moe'));
  expect(Object.keys(index.weight_map).sort()).toEqual(source.names().sort());
  const packed = Checkpoint.open(out);
  for (const name of source.names()) {
    if (packed.info(name).packed === undefined) expect(sha(packed.readBytes(name))).toBe(sha(source.readBytes(name)));
  }
  packed.close();
  source.close();
});

describe('refusals', () => {
  const src = path.join(GOLDEN, 'micro_dense');

  it('a non-empty --out is kept as it is without --force, and replaced with it', async () => {
    const out = path.join(tmp, 'occupied');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const r = await runCli(['quantize', '--model', src, '--dtype', 'q8_0', '--out', out]);
    expectCleanError(r, 1);
    expect(r.stderr).toContain(`--out ${out} already holds 1 file (e.g. notes.txt); pass --force to replace it`);
    expect(fs.readdirSync(out)).toEqual(['notes.txt']);
    const forced = await runCli(['quantize', '--model', src, '--dtype', 'q8_0', '--out', out, '--force', '-q']);
    expect(forced.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(strays(tmp)).toEqual([]);
  });

  it.each([
    [['--dtype', 'q5_k'], '--dtype must be one of bf16, q8_0, q4_0; got "q5_k".'],
    [['--dtype', 'f32'], '--dtype must be one of bf16, q8_0, q4_0; got "f32".'],
    [[], 'quantize needs --dtype (bf16, q8_0, q4_0).'],
    [['--dtype', 'q4_0', '--max-shard-size', 'big'], '--max-shard-size must be a size such as 4GB, 500MB or 2GiB, got "big".'],
  ])('%j is a usage error', async (args, message) => {
    const out = path.join(tmp, 'never');
    const r = await runCli(['quantize', '--model', src, '--out', out, ...args]);
    expectCleanError(r, 2);
    expect(r.stderr).toContain(message);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('no --out, and no --model, are usage errors', async () => {
    expectCleanError(await runCli(['quantize', '--model', src, '--dtype', 'q4_0']), 2);
    const r = await runCli(['quantize', '--dtype', 'q4_0', '--out', path.join(tmp, 'never')]);
    expectCleanError(r, 2);
    expect(r.stderr).toContain('quantize needs --model');
  });

  it('an --out inside the source, a missing parent folder, an already packed source and a hub model not in the offline cache are runtime errors', async () => {
    const copy = path.join(tmp, 'source-copy');
    fs.cpSync(src, copy, { recursive: true });
    const inside = await runCli(['quantize', '--model', copy, '--dtype', 'q4_0', '--out', path.join(copy, 'q4')]);
    expectCleanError(inside, 1);
    expect(inside.stderr).toContain(`is inside the source model folder ${copy}`);
    expect(fs.readdirSync(copy).sort()).toEqual(fs.readdirSync(src).sort());
    const orphan = await runCli(['quantize', '--model', src, '--dtype', 'q4_0', '--out', path.join(tmp, 'no', 'such', 'place')]);
    expectCleanError(orphan, 1);
    expect(orphan.stderr).toContain(`${path.join(tmp, 'no', 'such')} does not exist (quantize creates only the --out folder itself)`);
    expect((await runCli(['quantize', '--model', src, '--dtype', 'q4_0', '--out', path.join(tmp, 'packed-source'), '-q'])).code).toBe(0);
    const twice = await runCli([
      'quantize',
      '--model',
      path.join(tmp, 'packed-source'),
      '--dtype',
      'q8_0',
      '--out',
      path.join(tmp, 'twice'),
    ]);
    expectCleanError(twice, 1);
    expect(twice.stderr).toMatch(
      /packed-source is already a packed checkpoint \(.+ is q4_0\); quantize from the original float checkpoint instead\.\n/,
    );
    expect(fs.existsSync(path.join(tmp, 'twice'))).toBe(false);
    const cache = fs.mkdtempSync(path.join(tmp, 'cache-'));
    const hub = await runCli([
      'quantize',
      '--model',
      'test-org/absent',
      '--dtype',
      'q4_0',
      '--out',
      path.join(tmp, 'hub-out'),
      '--offline',
      '--cache-dir',
      cache,
    ]);
    expectCleanError(hub, 1);
    expect(hub.stderr).toMatch(/Offline mode is on.*test-org\/absent/);
    expect(fs.existsSync(path.join(tmp, 'hub-out'))).toBe(false);
  });
});

it('Ctrl-C while writing stops at once and leaves no folder and no temporary files', async () => {
  // Twelve 8 MiB float tensors, quantized in JavaScript (GRANITEFLOW_NATIVE=0): about a second of work.
  const src = path.join(tmp, 'big-source');
  fs.mkdirSync(src);
  fs.copyFileSync(path.join(GOLDEN, 'micro_dense', 'config.json'), path.join(src, 'config.json'));
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (let i = 0; i < 12; i++) {
    tensors[`model.layers.${i}.mamba.in_proj.weight`] = { shape: [512, 4096], data: new Float32Array(512 * 4096).fill(i + 0.5) };
  }
  writeSafetensors(path.join(src, 'model.safetensors'), tensors);
  const parent = fs.mkdtempSync(path.join(tmp, 'interrupted-'));
  const out = path.join(parent, 'out');
  const child = spawn(process.execPath, [BIN, 'quantize', '--model', src, '--dtype', 'q4_0', '--out', out], {
    cwd: REPO_DIR,
    env: { ...process.env, GRANITEFLOW_NATIVE: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let sawTemporaryFolder = false;
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (d.includes('Quantizing')) {
      sawTemporaryFolder = fs.readdirSync(parent).some((f) => f.startsWith('.out.graniteflow-quantize-'));
      child.kill('SIGINT');
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  expect(sawTemporaryFolder).toBe(true);
  expect(stderr).toContain('graniteflow: error: Cancelled.');
  expect(stderr).not.toContain('Wrote ');
  expect(code).toBe(1);
  expect(fs.readdirSync(parent)).toEqual([]);
});
